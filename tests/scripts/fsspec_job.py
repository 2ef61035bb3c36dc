"""fsspec access points on the memory and local filesystems: each call once; the comment names its records
(tests/jobs.py).  The memory filesystem lives in the process: the first calls make its files."""
import pathlib
import sys

import fsspec
import pandas as pd

from calls import run

d = pathlib.Path(sys.argv[1])
memory = fsspec.filesystem("memory")
local = fsspec.filesystem("file")


def setup():
    (d / "t.txt").write_text("local text")


def open_lazily():
    with fsspec.open(str(d / "t.txt"), "rt") as f:  # fsspec.LocalFileSystem.open read data t.txt
        return f.read()


CALLS = [
    lambda: memory.pipe_file("/data/a.csv", b"x,y\n1,2\n"),  # fsspec.MemoryFileSystem.pipe_file write data memory:///data/a.csv
    lambda: memory.write_text("data/b.txt", "bee"),  # fsspec.MemoryFileSystem.write_text write data memory:///data/b.txt
    lambda: memory.cat_file("/data/a.csv"),  # fsspec.MemoryFileSystem.cat_file read data memory:///data/a.csv
    lambda: memory.read_text("/data/b.txt"),  # fsspec.MemoryFileSystem.read_text read data memory:///data/b.txt
    lambda: memory.open("/data/a.csv", "rb").read(),  # fsspec.MemoryFileSystem.open read data memory:///data/a.csv
    lambda: sorted(memory.ls("/data", detail=False)),  # fsspec.MemoryFileSystem.ls list data memory:///data
    lambda: sorted(memory.glob("/data/*.csv")),  # fsspec.MemoryFileSystem.glob list data memory:///data/*.csv
    lambda: memory.cp_file("/data/a.csv", "/data/c.csv"),  # fsspec.MemoryFileSystem.cp_file read data memory:///data/a.csv + fsspec.MemoryFileSystem.cp_file write data memory:///data/c.csv
    lambda: memory.mv("/data/c.csv", "/data/d.csv"),  # fsspec.MemoryFileSystem.mv delete data memory:///data/c.csv + fsspec.MemoryFileSystem.mv write data memory:///data/d.csv
    lambda: pd.read_csv("memory://data/a.csv").shape,  # pandas.read_csv read data memory://data/a.csv
    lambda: memory.rm_file("/data/d.csv"),  # fsspec.MemoryFileSystem.rm_file delete data memory:///data/d.csv
    lambda: local.cat_file(str(d / "t.txt")),  # fsspec.LocalFileSystem.cat_file read data t.txt
    lambda: local.pipe_file(str(d / "w.txt"), b"written"),  # fsspec.LocalFileSystem.pipe_file write data w.txt
    open_lazily,
]

run(CALLS, setup)
