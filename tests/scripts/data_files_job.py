"""polars, h5py, Pillow, sqlite3 and pandas SQL access points: each call once; the comment names its
records (tests/jobs.py)."""
import pathlib
import sqlite3
import sys

import h5py
import numpy as np
import pandas as pd
import polars as pl
from PIL import Image

from calls import run

d = pathlib.Path(sys.argv[1])
frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


def setup():
    frame.write_csv(d / "t.csv")
    frame.write_parquet(d / "t.parquet")
    frame.write_parquet(d / "u.parquet")
    frame.write_ipc(d / "t.arrow")
    frame.write_ndjson(d / "t.ndjson")
    for name in ("t.h5", "append.h5"):
        with h5py.File(d / name, "w") as f:
            f["x"] = np.arange(4)
    Image.new("RGB", (4, 4), "red").save(d / "t.png")
    with sqlite3.connect(d / "t.db") as db:
        db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        db.execute("INSERT INTO users VALUES (1, 'ada'), (2, 'bob')")
    db.close()


def scan_then_collect():
    lazy = pl.scan_ipc(d / "t.arrow")  # nothing is read yet: no record here
    joined = lazy.with_columns(c=pl.col("a") * 2).join(pl.scan_ndjson(d / "t.ndjson"), on="a", how="left")
    return joined.collect().height  # polars.LazyFrame.collect read data t.arrow + polars.LazyFrame.collect read data t.ndjson


def h5_read():
    with h5py.File(d / "t.h5") as f:  # h5py.File read data t.h5
        return f["x"][()].tolist()


def h5_append():
    with h5py.File(str(d / "append.h5"), "a") as f:  # h5py.File write data append.h5
        f["y"] = np.arange(2)


def image_roundtrip():
    with Image.open(d / "t.png") as image:  # PIL.Image.open read data t.png
        image.load()
        image.save(d / "w.png")  # PIL.Image.Image.save write data w.png
        return image.size


def sqlite_query():
    db = sqlite3.connect(str(d / "t.db"))  # sqlite3.connect write data t.db
    try:
        return db.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        db.close()


def sqlite_read_only():
    db = sqlite3.connect(f"file:{d / 't.db'}?mode=ro", uri=True)  # sqlite3.connect read data t.db
    try:
        return len(pd.read_sql("SELECT name FROM users WHERE id = 1", db))  # pandas.read_sql read data t.db
    finally:
        db.close()


def pandas_to_sql():
    db = sqlite3.connect(d / "w.db")  # sqlite3.connect write data w.db
    try:
        return pd.DataFrame({"a": [1]}).to_sql("scores", db, index=False)  # pandas.DataFrame.to_sql write data w.db
    finally:
        db.close()


CALLS = [
    lambda: pl.read_csv(d / "t.csv").height,  # polars.read_csv read data t.csv
    lambda: pl.read_parquet(d / "t.parquet").height,  # polars.read_parquet read data t.parquet
    lambda: pl.read_parquet([str(d / "t.parquet"), str(d / "u.parquet")]).height,  # polars.read_parquet read data t.parquet + polars.read_parquet read data u.parquet
    lambda: pl.read_ipc(d / "t.arrow").height,  # polars.read_ipc read data t.arrow
    lambda: pl.read_ndjson(d / "t.ndjson").height,  # polars.read_ndjson read data t.ndjson
    lambda: pl.scan_parquet(d / "t.parquet").filter(pl.col("a") > 1).collect().height,  # polars.LazyFrame.collect read data t.parquet
    lambda: pl.scan_csv(d / "t.csv").sink_parquet(d / "w-sink.parquet"),  # polars.LazyFrame.sink_parquet read data t.csv + polars.LazyFrame.sink_parquet write data w-sink.parquet
    scan_then_collect,
    lambda: [f.height for f in pl.collect_all([pl.scan_csv(d / "t.csv"), pl.scan_ipc(d / "t.arrow")])],  # polars.collect_all read data t.csv + polars.collect_all read data t.arrow
    lambda: pl.scan_parquet(str(d / "*.parquet")).select(pl.len()).collect().item(),  # polars.LazyFrame.collect read data *.parquet
    lambda: frame.write_csv(d / "w.csv"),  # polars.DataFrame.write_csv write data w.csv
    lambda: frame.write_parquet(d / "w.parquet"),  # polars.DataFrame.write_parquet write data w.parquet
    lambda: frame.write_ipc(d / "w.arrow"),  # polars.DataFrame.write_ipc write data w.arrow
    lambda: len(frame.write_csv()),  # no file: no record
    lambda: frame.filter(pl.col("a") > 1).height,  # eager: polars collects a plan of its own inside, no file, no record
    h5_read,
    h5_append,
    image_roundtrip,
    sqlite_query,
    sqlite_read_only,
    pandas_to_sql,
]

run(CALLS, setup)
