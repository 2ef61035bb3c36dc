"""Hugging Face ``datasets``: ``load_dataset``, ``load_from_disk``, and a ``Dataset``'s saves and exports.

* ``load_dataset`` is one record per data source it was given: each of ``data_files``
  (a path, a list, or a ``{split: path or list}`` mapping; a glob as given, made
  absolute), else ``data_dir``, else a local directory or file named by ``path``, else
  the hub dataset ``hf://datasets/<path>`` with ``audit.resource.revision``.  Not one record
  per pass datasets makes over its files: its reads, cache writes and memory maps are
  folded in.  Where it cached the result goes into ``audit.cache.location``; the files it
  touched are listed in ``audit.resource.files`` (at most 64).
* ``load_from_disk`` is a read, ``Dataset.save_to_disk``/``DatasetDict.save_to_disk`` a
  write of the directory (its files listed); ``Dataset.to_parquet``/``to_csv``/``to_json``
  a write of the file (a buffer is not recorded).

Streaming (``streaming=True``) reads later, while iterating: the record is made at the
call.  Work datasets hands to other processes (``num_proc``) is recorded there on its own.
"""

from __future__ import annotations

import os
from typing import Any

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument, nothing_after, record_file_size
from otel_audit.hooks.huggingface_hook import hub_attributes
from otel_audit.resources import ResourcePolicy, fspath_or_none, safe_text

# datasets' own builders: load_dataset("csv", data_files=...) names a format, not a resource
PACKAGED_BUILDERS = frozenset({
    "arrow", "audiofolder", "csv", "imagefolder", "json", "pandas", "parquet", "sql", "text", "webdataset",
    "xml", "hdf5", "videofolder", "generator", "cache", "spark",
})


def _sources(value: Any) -> list:
    if isinstance(value, dict):
        return [one for item in value.values() for one in _sources(item)]
    if isinstance(value, (list, tuple)):
        return [one for item in value for one in _sources(item)]
    return [value]


def _describe_load_dataset(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> list[dict]:
    path = fspath_or_none(argument(args, kwargs, 0, "path"))
    data_files = argument(args, kwargs, 3, "data_files")
    data_dir = argument(args, kwargs, 2, "data_dir")
    if data_files is not None:
        named = _sources(data_files)
    elif data_dir is not None:
        named = [data_dir]
    elif path is not None and (os.path.exists(path) or "://" in path):
        named = [path]
    elif path is not None and path not in PACKAGED_BUILDERS:
        hub = hub_attributes(policy, path, "dataset", kwargs.get("revision"), None, schema.TYPE_DATA)
        return [hub] if hub is not None else []
    else:
        named = []
    return [attributes for attributes in (policy.describe(one) for one in named) if attributes is not None]


def _cache_location(attributes: dict, result: Any) -> None:
    """Where datasets cached what it loaded (the directory of the result's cache files), and the size
    of a data file it read."""
    record_file_size(attributes, result)
    splits = result.values() if isinstance(result, dict) else [result]
    for split in splits:
        files = getattr(split, "cache_files", None) or []
        for entry in files:
            filename = entry.get("filename") if isinstance(entry, dict) else None
            if filename:
                attributes[schema.AUDIT_CACHE_LOCATION] = safe_text(os.path.dirname(filename))
                return


def _one_path(position: int, name: str):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        return policy.describe(argument(args, kwargs, position, name))

    return describe



def _patch_load(point: AccessPoint, module) -> None:
    point.wrap(module, "load_dataset", point.audited("datasets.load_dataset", schema.ACTION_READ,
                                                     _describe_load_dataset, after=_cache_location, list_files=True))
    point.wrap(module, "load_from_disk", point.audited("datasets.load_from_disk", schema.ACTION_READ,
                                                       _one_path(0, "dataset_path"), after=nothing_after, list_files=True))


def _patch_class(class_name: str, methods: dict[str, tuple[int, str, bool]]):
    def patch(point: AccessPoint, module) -> None:
        cls = getattr(module, class_name, None)
        for method, (position, name, list_files) in methods.items():
            if cls is not None and method in vars(cls):
                point.wrap(cls, method, point.audited(f"datasets.{class_name}.{method}", schema.ACTION_WRITE,
                                                      _one_path(position, name), after=nothing_after, list_files=list_files))

    return patch


ACCESS_POINT = AccessPoint("datasets", {
    "datasets.load": _patch_load,
    "datasets.arrow_dataset": _patch_class("Dataset", {
        "save_to_disk": (0, "dataset_path", True),
        "to_parquet": (0, "path_or_buf", False),
        "to_csv": (0, "path_or_buf", False),
        "to_json": (0, "path_or_buf", False),
    }),
    "datasets.dataset_dict": _patch_class("DatasetDict", {"save_to_disk": (0, "dataset_dict_path", True)}),
})
