"""pyarrow access points and pandas writers: each call once; the comment names its records (tests/jobs.py)."""
import pathlib
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.json as pjson
import pyarrow.orc as orc
import pyarrow.parquet as pq

from calls import run

d = pathlib.Path(sys.argv[1])
table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})


def setup():
    pq.write_table(table, d / "t.parquet")
    pcsv.write_csv(table, d / "t.csv")
    feather.write_feather(table, d / "t.feather")
    orc.write_table(table, d / "t.orc")
    with ipc.new_file(d / "t.arrow", table.schema) as writer:
        writer.write_table(table)
    with ipc.new_stream(d / "t.stream", table.schema) as writer:
        writer.write_table(table)
    (d / "t.json").write_text('{"a": 1}\n{"a": 2}\n')
    (d / "parts").mkdir()
    pq.write_table(table, d / "parts" / "0.parquet")
    pq.write_table(table, d / "parts" / "1.parquet")


def parquet_writer():
    with pq.ParquetWriter(d / "w-writer.parquet", table.schema) as writer:  # pyarrow.parquet.ParquetWriter write data w-writer.parquet
        writer.write_table(table)
    return (d / "w-writer.parquet").stat().st_size > 0


def ipc_writers():
    with ipc.new_file(d / "w.arrow", table.schema) as writer:  # pyarrow.ipc.new_file write data w.arrow
        writer.write_table(table)
    with ipc.RecordBatchStreamWriter(d / "w.stream", table.schema) as writer:  # pyarrow.ipc.RecordBatchStreamWriter write data w.stream
        writer.write_table(table)


def os_file():
    with pa.OSFile(str(d / "w.bin"), "wb") as out:  # pyarrow.OSFile write data w.bin
        out.write(b"abc")
    with pa.OSFile(str(d / "t.csv")) as source:  # pyarrow.OSFile read data t.csv
        return isinstance(source, pa.OSFile) and len(source.read()) > 0


def lazy_scans():
    source = ds.dataset(d / "parts")  # pyarrow.dataset.dataset read data parts
    recent = source.filter(ds.field("a") > 1)
    scanner = recent.scanner(columns=["a"])
    rows = [scanner.to_table().num_rows]  # pyarrow.dataset.Scanner.to_table read data parts
    rows.append(sum(len(batch) for batch in source.to_batches()))  # pyarrow.dataset.Dataset.to_batches read data parts
    rows.append(source.head(2).num_rows)  # pyarrow.dataset.Dataset.head read data parts
    rows.append(ds.Scanner.from_dataset(dataset=recent).count_rows())  # pyarrow.dataset.Scanner.count_rows read data parts
    rows.append(next(iter(source.get_fragments())).count_rows())  # pyarrow.dataset.Fragment.count_rows read data parts/0.parquet
    other = ds.dataset(d / "t.parquet")  # pyarrow.dataset.dataset read data t.parquet
    rows.append(source.join(other, "a", "a", "inner", "l", "r").count_rows())  # pyarrow.dataset.Dataset.join read data parts + pyarrow.dataset.Dataset.join read data t.parquet
    rows.append(ds.dataset([source, other]).count_rows())  # pyarrow.dataset.Dataset.count_rows read data parts + pyarrow.dataset.Dataset.count_rows read data t.parquet
    return rows


def fragment():
    return ds.ParquetFileFormat().make_fragment(str(d / "t.parquet"), pafs.LocalFileSystem())  # names the file, reads nothing yet


def hand_made_dataset():
    made = ds.FileSystemDataset([fragment()], table.schema, ds.ParquetFileFormat())
    return made.to_table().num_rows  # pyarrow.dataset.Dataset.to_table read data t.parquet


def filesystem_files():
    local = pafs.LocalFileSystem()
    with local.open_output_stream(str(d / "w-fs.bin")) as out:  # pyarrow.fs.LocalFileSystem.open_output_stream write data w-fs.bin
        out.write(b"abc")
    local.copy_file(str(d / "w-fs.bin"), str(d / "w-fs2.bin"))  # pyarrow.fs.LocalFileSystem.copy_file read data w-fs.bin + pyarrow.fs.LocalFileSystem.copy_file write data w-fs2.bin
    local.move(str(d / "w-fs2.bin"), str(d / "w-fs3.bin"))  # pyarrow.fs.LocalFileSystem.move delete data w-fs2.bin + pyarrow.fs.LocalFileSystem.move write data w-fs3.bin
    local.delete_file(str(d / "w-fs3.bin"))  # pyarrow.fs.LocalFileSystem.delete_file delete data w-fs3.bin
    local.create_dir(str(d / "w-fs-dir" / "sub"))
    local.delete_dir_contents(str(d / "w-fs-dir"))  # pyarrow.fs.LocalFileSystem.delete_dir_contents delete data w-fs-dir
    local.delete_dir(str(d / "w-fs-dir"))  # pyarrow.fs.LocalFileSystem.delete_dir delete data w-fs-dir
    names = ["w-fs.bin", "w-fs2.bin", "w-fs3.bin", "w-fs-dir"]
    return [info.type.name for info in local.get_file_info([str(d / name) for name in names])]  # metadata only


def subtree_read():
    subtree = pafs.SubTreeFileSystem(str(d / "parts"), pafs.LocalFileSystem())
    with subtree.open_input_file("0.parquet") as source:  # pyarrow.fs.SubTreeFileSystem.open_input_file read data parts/0.parquet
        return source.size()


CALLS = [
    lambda: pq.read_table(d / "t.parquet").num_rows,  # pyarrow.parquet.read_table read data t.parquet
    lambda: pq.read_table(d / "parts").num_rows,  # pyarrow.parquet.read_table read data parts
    lambda: pq.ParquetFile(d / "t.parquet").metadata.num_rows,  # pyarrow.parquet.ParquetFile read data t.parquet
    lambda: pq.read_metadata(d / "t.parquet").num_columns,  # pyarrow.parquet.read_metadata read data t.parquet
    lambda: str(pq.read_schema(str(d / "t.parquet"))),  # pyarrow.parquet.read_schema read data t.parquet
    lambda: pq.write_table(table, d / "w.parquet"),  # pyarrow.parquet.write_table write data w.parquet
    parquet_writer,
    lambda: pcsv.read_csv(d / "t.csv").num_rows,  # pyarrow.csv.read_csv read data t.csv
    lambda: pcsv.open_csv(str(d / "t.csv")).read_all().num_rows,  # pyarrow.csv.open_csv read data t.csv
    lambda: pcsv.write_csv(table, d / "w.csv"),  # pyarrow.csv.write_csv write data w.csv
    lambda: pjson.read_json(d / "t.json").num_rows,  # pyarrow.json.read_json read data t.json
    lambda: feather.read_table(d / "t.feather").num_rows,  # pyarrow.feather.read_table read data t.feather
    lambda: len(feather.read_feather(d / "t.feather")),  # pyarrow.feather.read_feather read data t.feather
    lambda: feather.write_feather(table, d / "w.feather"),  # pyarrow.feather.write_feather write data w.feather
    lambda: orc.read_table(d / "t.orc").num_rows,  # pyarrow.orc.read_table read data t.orc
    lambda: orc.ORCFile(d / "t.orc").nrows,  # pyarrow.orc.ORCFile read data t.orc
    lambda: orc.write_table(table, d / "w.orc"),  # pyarrow.orc.write_table write data w.orc
    lambda: ipc.open_file(d / "t.arrow").read_all().num_rows,  # pyarrow.ipc.open_file read data t.arrow
    lambda: ipc.open_stream(d / "t.stream").read_all().num_rows,  # pyarrow.ipc.open_stream read data t.stream
    ipc_writers,
    lambda: ds.dataset(d / "parts").to_table().num_rows,  # pyarrow.dataset.dataset read data parts + pyarrow.dataset.Dataset.to_table read data parts
    lambda: ds.dataset([str(d / "t.parquet"), str(d / "parts" / "0.parquet")]).count_rows(),  # pyarrow.dataset.dataset read data t.parquet + pyarrow.dataset.dataset read data parts/0.parquet + pyarrow.dataset.Dataset.count_rows read data t.parquet + pyarrow.dataset.Dataset.count_rows read data parts/0.parquet
    lazy_scans,
    lambda: fragment().to_table().num_rows,  # pyarrow.dataset.Fragment.to_table read data t.parquet
    hand_made_dataset,
    lambda: ds.Scanner.from_fragment(fragment(), schema=table.schema).to_table().num_rows,  # pyarrow.dataset.Scanner.to_table read data t.parquet
    lambda: pafs.LocalFileSystem().open_input_file(str(d / "t.csv")).read(),  # pyarrow.fs.LocalFileSystem.open_input_file read data t.csv
    lambda: pafs.LocalFileSystem().open_input_stream(str(d / "t.csv")).read(),  # pyarrow.fs.LocalFileSystem.open_input_stream read data t.csv
    lambda: pafs.LocalFileSystem().open_append_stream(str(d / "w-append.bin")).close(),  # pyarrow.fs.LocalFileSystem.open_append_stream write data w-append.bin
    lambda: len(pafs.LocalFileSystem().get_file_info(pafs.FileSelector(str(d / "parts")))),  # pyarrow.fs.LocalFileSystem.get_file_info list data parts
    lambda: pafs.LocalFileSystem().get_file_info(str(d / "t.csv")).size,  # metadata only: no record
    filesystem_files,
    subtree_read,
    lambda: ds.write_dataset(table, d / "w-dataset", format="parquet"),  # pyarrow.dataset.write_dataset write data w-dataset
    lambda: pa.memory_map(str(d / "t.arrow")).size(),  # pyarrow.memory_map read data t.arrow
    lambda: pa.input_stream(str(d / "t.csv")).read(1),  # pyarrow.input_stream read data t.csv
    lambda: pa.output_stream(str(d / "w-out.bin")).close(),  # pyarrow.output_stream write data w-out.bin
    os_file,
    lambda: frame.to_parquet(d / "w-pandas.parquet"),  # pandas.DataFrame.to_parquet write data w-pandas.parquet
    lambda: frame.to_feather(d / "w-pandas.feather"),  # pandas.DataFrame.to_feather write data w-pandas.feather
    lambda: frame.to_orc(d / "w-pandas.orc"),  # pandas.DataFrame.to_orc write data w-pandas.orc
    lambda: frame.to_csv(d / "w-pandas.csv"),  # pandas.DataFrame.to_csv write data w-pandas.csv
    lambda: frame["a"].to_json(d / "w-series.json"),  # pandas.Series.to_json write data w-series.json
    lambda: len(pd.read_parquet(d / "t.parquet")),  # pandas.read_parquet read data t.parquet
    lambda: len(frame.to_csv()),  # no file: no record
    lambda: pq.read_table(pa.BufferReader(pa.py_buffer((d / "t.parquet").read_bytes()))).num_rows,  # builtins.open read data t.parquet
]

run(CALLS, setup)
