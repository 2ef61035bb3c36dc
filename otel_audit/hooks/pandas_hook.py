"""pandas: every ``pandas.read_*`` that takes a path or URL, and every ``DataFrame.to_*``/``Series.to_*`` that writes one.

A buffer or open file argument keeps working and is not recorded (the ``open``
that produced it was).  URLs are recorded as given, without credentials or
query values; ``s3://`` URLs also carry ``aws.s3.bucket``/``aws.s3.key``.
What pandas opens internally (``open``, fsspec, pyarrow) belongs to the
``read_*``/``to_*`` call and is not recorded again.  A writer given no path
(``df.to_csv()`` returns the text) writes no file and is not recorded.
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


# DataFrame/Series methods that write a file: the parameter naming it (always the first after self)
WRITERS: dict[str, str] = {
    "to_csv": "path_or_buf",
    "to_json": "path_or_buf",
    "to_parquet": "path",
    "to_feather": "path",
    "to_orc": "path",
    "to_pickle": "path",
    "to_excel": "excel_writer",
    "to_hdf": "path_or_buf",
    "to_stata": "path",
    "to_xml": "path_or_buffer",
    "to_html": "buf",
    "to_markdown": "buf",
    "to_latex": "buf",
}


def _writer_describer(method: str, parameter: str, series_type: type):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        attributes = policy.describe(argument(args, kwargs, 0, parameter))
        if attributes is not None:
            kind = "Series" if isinstance(instance, series_type) else "DataFrame"
            attributes[schema.AUDIT_API] = f"pandas.{kind}.{method}"
        return attributes

    return describe


def _patch_pandas(point: AccessPoint, module) -> None:
    for name, reader in READERS.items():
        if hasattr(module, name):  # older pandas lack some readers
            point.wrap(module, name, point.audited(f"pandas.{name}", schema.ACTION_READ, _describer(reader)))
    for method, parameter in WRITERS.items():
        describe = _writer_describer(method, parameter, module.Series)
        for frame_type in (module.DataFrame, module.Series):
            # patched where it is defined (NDFrame for the ones both share), once
            owner = next((cls for cls in frame_type.__mro__ if method in vars(cls)), None)
            if owner is not None:
                point.wrap(owner, method, point.audited(None, schema.ACTION_WRITE, describe))


ACCESS_POINT = AccessPoint("pandas", {"pandas": _patch_pandas})
