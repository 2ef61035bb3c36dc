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

Lazy scans are recorded when they read: ``pyarrow.dataset.dataset(src)`` is recorded when
it is made (it lists ``src`` and reads a schema there), and then each call that reads its
rows (``to_table``, ``to_batches``, ``head``, ``take``, ``count_rows``, ``join``, ``sort_by``,
and the same methods of a ``Scanner`` made from it or of one of its fragments) is a read of
the source the user named, at the line that made it.  A dataset derived with ``filter`` or
``replace_schema``, and its scanners, read that same source.  A dataset made some other way
names its files.  The methods of ``pyarrow.fs`` filesystems (local, S3 and the others) are
recorded as ``pyarrow.fs.<Class>.<method>``: opens by their mode, deletes, ``copy_file`` and
``move`` (two records, as the os calls), and a listing with a ``FileSelector``.  These are
methods of pyarrow's immutable C types, set on them as ``_base`` describes.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from otel_audit import diagnostics, schema
from otel_audit.context import in_audited_call
from otel_audit.hooks._base import (AccessPoint, FileArgument, argument, file_functions_patchers, nothing_after,
                                    on_filesystem, record_file_size)
from otel_audit.resources import ResourcePolicy

READ, WRITE, DELETE, LIST = schema.ACTION_READ, schema.ACTION_WRITE, schema.ACTION_DELETE, schema.ACTION_LIST

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
        "write_dataset": FileArgument(WRITE, 1, "base_dir"),
    },
}

# -- lazy scans ----------------------------------------------------------------------------------
# The functions that make a dataset: recorded when made (they list the source and read a schema),
# and the dataset remembers what the user named, for the reads that come later.
DATASET_MAKERS = {
    "pyarrow.dataset": {"dataset": FileArgument(READ, 0, "source"),
                        "parquet_dataset": FileArgument(READ, 0, "metadata_path")},
    "pyarrow.dataset:FileSystemDataset": {"from_paths": FileArgument(READ, 0, "paths")},
}
# The methods that read rows, of each lazy type, recorded as pyarrow.dataset.<Type>.<method>
SCAN_METHODS = {
    "Dataset": ("to_table", "to_batches", "head", "take", "count_rows", "join", "join_asof", "sort_by"),
    "Scanner": ("to_table", "to_batches", "to_reader", "head", "take", "count_rows", "scan_batches"),
    "Fragment": ("to_table", "to_batches", "head", "take", "count_rows"),
}
# join/join_asof also read the right-hand dataset
SECOND_SOURCE = {"join": (0, "right_dataset"), "join_asof": (0, "right_dataset")}
# The methods that make a lazy object reading what another one reads: (type, method, where that one is:
# None for the instance, else the argument's (position, name)).  A type None: a function of
# pyarrow.dataset (dataset([ds1, ds2]) unites its children there; a union's .children are new objects
# each time).
SAME_SOURCE = (
    ("Dataset", "filter", None), ("Dataset", "replace_schema", None), ("Dataset", "scanner", None),
    ("Fragment", "scanner", None), ("Scanner", "from_dataset", (0, "dataset")),
    ("Scanner", "from_fragment", (0, "fragment")), (None, "_union_dataset", (0, "children")),
)

# a Dataset or Scanner (weakly) -> the resources its scans read: what the user named when making it
_sources: "weakref.WeakKeyDictionary[Any, list[dict]]" = weakref.WeakKeyDictionary()
_PER_CALL = frozenset({schema.AUDIT_API, schema.AUDIT_ACTION, schema.CODE_FILE_PATH, schema.CODE_LINE_NUMBER,
                       schema.CODE_FUNCTION_NAME, schema.FILE_SIZE})


def _remember_source(attributes: dict, result: Any) -> None:
    record_file_size(attributes, result)
    _sources.setdefault(result, []).append({k: v for k, v in attributes.items() if k not in _PER_CALL})


def _read_by(policy: ResourcePolicy, lazy: Any) -> list[dict]:
    """The resources that reading the rows of ``lazy`` (a Dataset, Scanner or Fragment) reads."""
    known = _sources.get(lazy)
    if known is not None:
        return [dict(resource) for resource in known]
    children = getattr(lazy, "children", None)  # a UnionDataset: what each of its children reads
    if children:
        return [resource for child in children for resource in _read_by(policy, child)]
    # A dataset made some other way: the files of its fragments.  (Never a Dataset's own .filesystem:
    # pyarrow crashes the process on it for a dataset made from buffers.)
    fragments = lazy.get_fragments() if hasattr(lazy, "get_fragments") else (lazy,)
    resources = []
    for fragment in fragments:
        filesystem = getattr(fragment, "filesystem", None)  # None: a fragment of a buffer, or in memory
        if filesystem is not None:
            resource = policy.describe(on_filesystem(filesystem, fragment.path))
            if resource is not None:
                resources.append(resource)
    return resources


def _describe_scan(method: str) -> Callable:
    second = SECOND_SOURCE.get(method)

    def describe(policy: ResourcePolicy, instance: Any, args: tuple, kwargs: dict) -> list[dict]:
        resources = _read_by(policy, instance)
        other = argument(args, kwargs, *second) if second is not None else None
        return resources if other is None else resources + _read_by(policy, other)

    return describe


def _same_source(point: AccessPoint, where: "tuple[int, str] | None") -> Callable:
    """A wrapper that records nothing: the lazy object made reads what the one it was made from reads."""

    def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        result = wrapped(*args, **kwargs)
        recorder = point.recorder
        if recorder is None or in_audited_call.get() is not False:  # inside read_table: its reads are folded
            return result
        try:
            origin = instance if where is None else argument(args, kwargs, *where)
            if origin is not None:
                origins = origin if isinstance(origin, (list, tuple)) else (origin,)
                resources = [resource for one in origins for resource in _read_by(recorder.policy, one)]
                if resources:
                    _sources[result] = resources
        except Exception as exc:  # the scan is made all the same; its reads name nothing
            diagnostics.report_internal_error("pyarrow.dataset (the source of a scan)", exc)
        return result

    return wrapper


_FILE_FUNCTIONS = file_functions_patchers(MODULES, schema.TYPE_DATA)
_DATASET_MAKERS = file_functions_patchers(DATASET_MAKERS, schema.TYPE_DATA, after=_remember_source)


def _patch_dataset(point: AccessPoint, module: Any) -> None:
    _FILE_FUNCTIONS["pyarrow.dataset"](point, module)  # write_dataset: the file-functions table
    _DATASET_MAKERS["pyarrow.dataset"](point, module)
    for type_name, methods in SCAN_METHODS.items():
        owner = getattr(module, type_name)
        for method in methods:
            if method in vars(owner):
                point.wrap(owner, method, point.audited(f"pyarrow.dataset.{type_name}.{method}", READ,
                                                        _describe_scan(method)))
    for type_name, method, where in SAME_SOURCE:
        owner = module if type_name is None else getattr(module, type_name)
        if method in vars(owner):
            point.wrap(owner, method, _same_source(point, where))


# -- pyarrow.fs ----------------------------------------------------------------------------------
# FileSystem's methods (every pyarrow filesystem inherits them), recorded as pyarrow.fs.<Class>.<method>:
# one file argument each, or a source and a destination (two records, as the os calls)
FILESYSTEM_METHODS = {
    "open_input_file": (FileArgument(READ, 0, "path"),),
    "open_input_stream": (FileArgument(READ, 0, "path"),),
    "open_output_stream": (FileArgument(WRITE, 0, "path"),),
    "open_append_stream": (FileArgument(WRITE, 0, "path"),),
    "delete_file": (FileArgument(DELETE, 0, "path"),),
    "delete_dir": (FileArgument(DELETE, 0, "path"),),
    "delete_dir_contents": (FileArgument(DELETE, 0, "path"),),
    "copy_file": (FileArgument(READ, 0, "src"), FileArgument(WRITE, 1, "dest")),
    "move": (FileArgument(DELETE, 0, "src"), FileArgument(WRITE, 1, "dest")),
}


def _on_this_filesystem(policy: ResourcePolicy, instance: Any, target: Any, api: str, action: str) -> "dict | None":
    attributes = policy.describe(on_filesystem(instance, target))
    if attributes is not None:
        attributes[schema.AUDIT_API] = f"pyarrow.fs.{type(instance).__name__}.{api}"
        attributes[schema.AUDIT_ACTION] = action
    return attributes


def _describe_filesystem_call(method: str, arguments: tuple) -> Callable:
    def describe(policy: ResourcePolicy, instance: Any, args: tuple, kwargs: dict) -> list[dict]:
        return [_on_this_filesystem(policy, instance, argument(args, kwargs, where.position, where.name), method,
                                    where.action) for where in arguments]

    return describe


def _describe_listing(policy: ResourcePolicy, instance: Any, args: tuple, kwargs: dict) -> "dict | None":
    """``get_file_info(FileSelector(dir))`` lists ``dir``; of named paths it reads metadata only (not recorded)."""
    base_dir = getattr(argument(args, kwargs, 0, "paths_or_selector"), "base_dir", None)
    return _on_this_filesystem(policy, instance, base_dir, "get_file_info", LIST) if isinstance(base_dir, str) else None


def _patch_fs(point: AccessPoint, module: Any) -> None:
    owner = module.FileSystem
    for method, arguments in FILESYSTEM_METHODS.items():
        if method in vars(owner):
            point.wrap(owner, method, point.audited(None, None, _describe_filesystem_call(method, arguments)))
    if "get_file_info" in vars(owner):
        point.wrap(owner, "get_file_info", point.audited(None, None, _describe_listing, after=nothing_after))


ACCESS_POINT = AccessPoint("pyarrow", {**_FILE_FUNCTIONS, "pyarrow.dataset": _patch_dataset, "pyarrow.fs": _patch_fs})
