"""polars: every ``read_*``/``scan_*`` that takes a source, ``DataFrame.write_*`` and ``LazyFrame.sink_*``.

polars reads and writes in Rust (``open`` never runs), so only this hook sees these
accesses.  A list of sources is one record per source; a buffer or bytes name no file
and are not recorded.  ``read_*`` calling ``scan_*(...).collect()`` inside is one record,
for the ``read_*``.

A ``scan_*`` is recorded when it is called, naming the source the user gave: the rows are
read later, by ``collect()``/``sink_*()`` of whatever was built on it, which is not
recorded again and not attributed to that later line (the plan does not say cheaply and
reliably which sources it reads).
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

READ, WRITE = schema.ACTION_READ, schema.ACTION_WRITE

READERS = ("read_csv", "read_parquet", "read_ipc", "read_ipc_stream", "read_ipc_schema", "read_json",
           "read_ndjson", "read_avro", "read_excel", "read_ods", "read_delta", "read_lines",
           "read_parquet_metadata", "read_parquet_schema",
           "scan_csv", "scan_parquet", "scan_ipc", "scan_ndjson", "scan_delta", "scan_iceberg", "scan_lines")
WRITERS = {"write_csv": "file", "write_parquet": "file", "write_ipc": "file", "write_ipc_stream": "file",
           "write_json": "file", "write_ndjson": "file", "write_avro": "file", "write_excel": "workbook",
           "write_delta": "target"}
SINKS = ("sink_parquet", "sink_csv", "sink_ipc", "sink_ndjson")

MODULES = {
    "polars": {name: FileArgument(READ, 0, "source") for name in READERS},
    "polars:DataFrame": {name: FileArgument(WRITE, 0, parameter) for name, parameter in WRITERS.items()},
    "polars:LazyFrame": {name: FileArgument(WRITE, 0, "path") for name in SINKS},
}

ACCESS_POINT = file_functions_access_point("polars", MODULES, schema.TYPE_DATA)
