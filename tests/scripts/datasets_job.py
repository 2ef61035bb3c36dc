"""Hugging Face datasets access points: each call once; the comment names its records (tests/jobs.py)."""
import os
import pathlib
import sys

d = pathlib.Path(sys.argv[1])
os.environ.update(HF_HUB_OFFLINE="1", HF_HOME=str(d / "hf-home"), HF_DATASETS_CACHE=str(d / "cache"),
                  HF_DATASETS_DISABLE_PROGRESS_BARS="1")

import datasets  # noqa: E402

from calls import run  # noqa: E402


def setup():
    (d / "train.csv").write_text("a,b\n1,2\n3,4\n")
    (d / "test.csv").write_text("a,b\n5,6\n")
    datasets.Dataset.from_dict({"a": [1, 2, 3]}).save_to_disk(str(d / "saved"))


CALLS = [
    lambda: datasets.load_dataset("csv", data_files=str(d / "train.csv"))["train"].num_rows,  # datasets.load_dataset read data train.csv
    lambda: {split: ds.num_rows for split, ds in datasets.load_dataset(  # datasets.load_dataset read data train.csv + datasets.load_dataset read data test.csv
        "csv", data_files={"train": str(d / "train.csv"), "test": [str(d / "test.csv")]}).items()},
    lambda: datasets.load_from_disk(str(d / "saved")).num_rows,  # datasets.load_from_disk read data saved
    lambda: datasets.Dataset.from_dict({"a": [1]}).save_to_disk(d / "saved2"),  # datasets.Dataset.save_to_disk write data saved2
    lambda: datasets.Dataset.from_dict({"a": [1]}).to_parquet(str(d / "out.parquet")) > 0,  # datasets.Dataset.to_parquet write data out.parquet
    lambda: datasets.Dataset.from_dict({"a": [1]}).to_csv(str(d / "out.csv")) > 0,  # datasets.Dataset.to_csv write data out.csv
    lambda: datasets.Dataset.from_dict({"a": [1]}).to_json(str(d / "out.jsonl")) > 0,  # datasets.Dataset.to_json write data out.jsonl
]

run(CALLS, setup)
