"""pyarrow: every function and class that reads or writes a named file, recorded as that call.

pyarrow reads and writes in C++ (``open`` never runs), so only this hook sees these
accesses.  A path given with ``filesystem=`` is recorded as the URL it names there
(``s3://bucket/key``); a list of paths gives one record per path; a buffer, a
``NativeFile`` or an in-memory table names no file and is not recorded.  What a call
does inside (``read_table`` opening a ``ParquetDataset``, ``feather.read_feather``
calling ``read_table``) is folded into its record.  Classes (``ParquetFile``,
``ParquetWriter``, ``OSFile``, ``ipc.RecordBatchFileWriter``...) are recorded when they
are called, which is when they open the file; they stay usable as the classes they are
(``isinstance``, subclassing).

Not patchable, so not recorded as themselves: methods of pyarrow's C++ types.  A
``pyarrow.dataset.dataset(src)`` is recorded when it is made (it lists the source and
reads a schema there); the rows its ``to_table()``/``scanner()`` read later are not
recorded again.  ``pyarrow.fs.LocalFileSystem().open_input_file()`` and its other
methods are not recorded (issue 10).
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

READ, WRITE = schema.ACTION_READ, schema.ACTION_WRITE

MODULES = {
    "pyarrow": {
        "memory_map": FileArgument(READ, 0, "path", mode=(1, "mode", "r")),
        "create_memory_map": FileArgument(WRITE, 0, "path"),
        "OSFile": FileArgument(READ, 0, "path", mode=(1, "mode", "r")),
        "input_stream": FileArgument(READ, 0, "source"),
        "output_stream": FileArgument(WRITE, 0, "source"),
    },
    "pyarrow.parquet": {
        "read_table": FileArgument(READ, 0, "source"),
        "read_pandas": FileArgument(READ, 0, "source"),
        "ParquetFile": FileArgument(READ, 0, "source"),
        "ParquetDataset": FileArgument(READ, 0, "path_or_paths"),
        "read_metadata": FileArgument(READ, 0, "where"),
        "read_schema": FileArgument(READ, 0, "where"),
        "write_table": FileArgument(WRITE, 1, "where"),
        "ParquetWriter": FileArgument(WRITE, 0, "where"),
        "write_to_dataset": FileArgument(WRITE, 1, "root_path"),
        "write_metadata": FileArgument(WRITE, 1, "where"),
    },
    "pyarrow.csv": {
        "read_csv": FileArgument(READ, 0, "input_file"),
        "open_csv": FileArgument(READ, 0, "input_file"),
        "write_csv": FileArgument(WRITE, 1, "output_file"),
        "CSVWriter": FileArgument(WRITE, 0, "sink"),
    },
    "pyarrow.json": {
        "read_json": FileArgument(READ, 0, "input_file"),
        "open_json": FileArgument(READ, 0, "input_file"),
    },
    "pyarrow.feather": {
        "read_table": FileArgument(READ, 0, "source"),
        "read_feather": FileArgument(READ, 0, "source"),
        "write_feather": FileArgument(WRITE, 1, "dest"),
    },
    "pyarrow.orc": {
        "read_table": FileArgument(READ, 0, "source"),
        "ORCFile": FileArgument(READ, 0, "source"),
        "write_table": FileArgument(WRITE, 1, "where"),
        "ORCWriter": FileArgument(WRITE, 0, "where"),
    },
    "pyarrow.ipc": {
        "open_file": FileArgument(READ, 0, "source"),
        "open_stream": FileArgument(READ, 0, "source"),
        "RecordBatchFileReader": FileArgument(READ, 0, "source"),
        "RecordBatchStreamReader": FileArgument(READ, 0, "source"),
        "new_file": FileArgument(WRITE, 0, "sink"),
        "new_stream": FileArgument(WRITE, 0, "sink"),
        "RecordBatchFileWriter": FileArgument(WRITE, 0, "sink"),
        "RecordBatchStreamWriter": FileArgument(WRITE, 0, "sink"),
    },
    "pyarrow.dataset": {
        "dataset": FileArgument(READ, 0, "source"),
        "parquet_dataset": FileArgument(READ, 0, "metadata_path"),
        "write_dataset": FileArgument(WRITE, 1, "base_dir"),
    },
}

ACCESS_POINT = file_functions_access_point("pyarrow", MODULES, schema.TYPE_DATA)
