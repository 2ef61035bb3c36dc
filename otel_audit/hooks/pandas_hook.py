"""pandas: every ``pandas.read_*`` that takes a path or URL.

A buffer or open file argument keeps working and is not recorded (the ``open``
that produced it was).  URLs are recorded as given, without credentials or
query values; ``s3://`` URLs also carry ``aws.s3.bucket``/``aws.s3.key``.
What pandas opens internally (``open``, fsspec) belongs to the ``read_*`` call
and is not recorded again.
"""

from __future__ import annotations

from typing import NamedTuple

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument
from otel_audit.resources import ResourcePolicy


class Reader(NamedTuple):
    argument: str  # name of the path-or-buffer parameter (always the first)
    accepts_literal: bool = False  # also takes the document itself as a string (deprecated in pandas)


READERS: dict[str, Reader] = {
    "read_csv": Reader("filepath_or_buffer"),
    "read_table": Reader("filepath_or_buffer"),
    "read_fwf": Reader("filepath_or_buffer"),
    "read_json": Reader("path_or_buf", accepts_literal=True),
    "read_parquet": Reader("path"),
    "read_feather": Reader("path"),
    "read_orc": Reader("path"),
    "read_excel": Reader("io"),
    "read_pickle": Reader("filepath_or_buffer"),
    "read_hdf": Reader("path_or_buf"),
    "read_stata": Reader("filepath_or_buffer"),
    "read_sas": Reader("filepath_or_buffer"),
    "read_spss": Reader("path"),
    "read_xml": Reader("path_or_buffer", accepts_literal=True),
    "read_html": Reader("io", accepts_literal=True),
}


def _is_literal_document(value: object) -> bool:
    return isinstance(value, str) and ("\n" in value or value.lstrip()[:1] in ("<", "{", "["))


def _describer(reader: Reader):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        target = argument(args, kwargs, 0, reader.argument)
        if reader.accepts_literal and _is_literal_document(target):
            return None
        return policy.describe(target)

    return describe


def _patch_pandas(point: AccessPoint, module) -> None:
    for name, reader in READERS.items():
        if hasattr(module, name):  # older pandas lack some readers
            point.wrap(module, name, point.audited(f"pandas.{name}", schema.ACTION_READ, _describer(reader)))


ACCESS_POINT = AccessPoint("pandas", {"pandas": _patch_pandas})
