"""polars: ``read_*``, ``scan_*`` (recorded when the rows are read), ``DataFrame.write_*``, ``LazyFrame.sink_*``.

polars reads and writes in Rust (``open`` never runs), so only this hook sees these
accesses.  A list of sources is one record per source; a buffer or bytes name no file
and are not recorded.  ``read_*`` calling ``scan_*(...).collect()`` inside is one record,
for the ``read_*``.

A ``scan_*`` reads nothing yet: the rows are read by ``collect()``/``collect_batches()``,
``polars.collect_all()`` or a ``sink_*()`` of whatever the user built on it, possibly many lines later.  That call,
made from the user's code, is recorded as a read of each scanned source the user named,
at its own line (``polars.LazyFrame.collect``); a sink is also the write of its path.  To
know which sources a plan reads, the hook remembers, per scan it saw made, the line
polars' own ``explain()`` prints for that scan, and finds those lines in the collected
plan's ``explain()`` (only when the user's code collects and scans were made).  The scan
itself only reads the source's schema: fail-closed refuses it, but it is not recorded.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any

from otel_audit import diagnostics, schema
from otel_audit.callsite import find_call_site
from otel_audit.context import in_audited_call
from otel_audit.hooks._base import AccessPoint, FileArgument, argument, describe_file_argument, file_functions_patchers
from otel_audit.resources import ResourcePolicy

READ, WRITE = schema.ACTION_READ, schema.ACTION_WRITE

READERS = ("read_csv", "read_parquet", "read_ipc", "read_ipc_stream", "read_ipc_schema", "read_json",
           "read_ndjson", "read_avro", "read_excel", "read_ods", "read_delta", "read_lines",
           "read_parquet_metadata", "read_parquet_schema")
SCANS = ("scan_csv", "scan_parquet", "scan_ipc", "scan_ndjson", "scan_delta", "scan_iceberg", "scan_lines")
WRITERS = {"write_csv": "file", "write_parquet": "file", "write_ipc": "file", "write_ipc_stream": "file",
           "write_json": "file", "write_ndjson": "file", "write_avro": "file", "write_excel": "workbook",
           "write_delta": "target"}
SINKS = ("sink_parquet", "sink_csv", "sink_ipc", "sink_ndjson")
COLLECTS = ("collect", "collect_batches")

MODULES = {
    "polars": {name: FileArgument(READ, 0, "source") for name in READERS},
    "polars:DataFrame": {name: FileArgument(WRITE, 0, parameter) for name, parameter in WRITERS.items()},
}
_SOURCE = FileArgument(READ, 0, "source")
_MAX_SCANS = 10_000  # scans remembered (the oldest forgotten first)
_scans: "OrderedDict[str, list[dict]]" = OrderedDict()  # explain() line of a scan -> its sources' attributes
_scans_lock = threading.Lock()


def _scan_lines(plan: str) -> list[str]:
    return [line.strip() for line in plan.splitlines() if " SCAN [" in line or line.lstrip().startswith("SCAN [")]


def _remember(lazy: Any, accesses: list[dict]) -> None:
    for line in _scan_lines(lazy.explain(optimized=False)):
        with _scans_lock:
            _scans[line] = accesses
            _scans.move_to_end(line)
            while len(_scans) > _MAX_SCANS:
                _scans.popitem(last=False)


def _scanned_sources(lazy: Any) -> list[dict]:
    """Fresh attributes for each remembered source the plan of ``lazy`` scans."""
    if not _scans:
        return []
    found = []
    for line in _scan_lines(lazy.explain(optimized=False)):
        with _scans_lock:
            accesses = _scans.get(line)
        found.extend({**attributes, schema.AUDIT_ACTION: READ} for attributes in accesses or ())
    return found


def _scan_wrapper(point: AccessPoint, name: str):
    api = f"polars.{name}"

    def wrapper(wrapped, instance, args, kwargs):
        recorder = point._recorder
        if recorder is None or in_audited_call.get() is not False:  # inside read_*: its record covers it
            return wrapped(*args, **kwargs)
        try:
            accesses = describe_file_argument(recorder.policy, _SOURCE, args, kwargs, schema.TYPE_DATA)
        except Exception as exc:
            diagnostics.report_internal_error("polars scan", exc)
            accesses = []
        if accesses:  # fail-closed, and the policy: the scan reads the source's schema; refused, it is the record
            caller = sys._getframe().f_back
            call_site = (find_call_site(caller) if caller is not None else None) or ("<unknown>", 0, "<unknown>")
            recorder.admit([{**attributes, schema.AUDIT_API: api, schema.AUDIT_ACTION: READ, schema.CODE_FILE_PATH: call_site[0],
                             schema.CODE_LINE_NUMBER: call_site[1], schema.CODE_FUNCTION_NAME: call_site[2]}
                            for attributes in accesses])
        lazy = wrapped(*args, **kwargs)
        if accesses:
            try:
                _remember(lazy, accesses)
            except Exception as exc:  # the scan works; its reads will not be recorded
                diagnostics.report_internal_error("polars scan", exc)
        return lazy

    return wrapper


def _collect_describer(sink_parameter: str | None):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> list[dict]:
        accesses = _scanned_sources(instance) if instance is not None else []
        if sink_parameter is not None:
            written = policy.describe(argument(args, kwargs, 0, sink_parameter))
            if written is not None:
                written[schema.AUDIT_ACTION] = WRITE
                accesses.append(written)
        return accesses

    return describe


def _describe_collect_all(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> list[dict]:
    frames = argument(args, kwargs, 0, "lazy_frames")
    return [a for lazy in frames if hasattr(lazy, "explain") for a in _scanned_sources(lazy)] if isinstance(
        frames, (list, tuple)) else []


_FILE_FUNCTIONS = file_functions_patchers(MODULES, schema.TYPE_DATA)


def _patch_polars(point: AccessPoint, module) -> None:
    _FILE_FUNCTIONS["polars"](point, module)  # readers and DataFrame writers: the file-functions table
    for name in SCANS:
        if hasattr(module, name):
            point.wrap(module, name, _scan_wrapper(point, name))
    if hasattr(module, "collect_all"):
        point.wrap(module, "collect_all", point.audited("polars.collect_all", None, _describe_collect_all,
                                                        user_calls_only=True))
    lazy = module.LazyFrame
    for name in COLLECTS + SINKS:
        if name in vars(lazy):
            sink = "path" if name.startswith("sink_") else None
            # only the user's own collect: polars' eager DataFrame methods collect internally all the time
            point.wrap(lazy, name, point.audited(f"polars.LazyFrame.{name}", None, _collect_describer(sink),
                                                 user_calls_only=sink is None))


ACCESS_POINT = AccessPoint("polars", {"polars": _patch_polars})
