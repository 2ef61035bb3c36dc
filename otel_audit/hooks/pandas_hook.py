"""pandas: every ``pandas.read_*`` that takes a path or URL, and every ``DataFrame.to_*``/``Series.to_*`` that writes one.

A buffer or open file argument keeps working and is not recorded (the ``open``
that produced it was).  URLs are recorded as given, without credentials or
query values; ``s3://`` URLs also carry ``aws.s3.bucket``/``aws.s3.key``.
What pandas opens internally (``open``, fsspec, pyarrow) belongs to the
``read_*``/``to_*`` call and is not recorded again.  A writer given no path
(``df.to_csv()`` returns the text) writes no file and is not recorded.

SQL (``read_sql``, ``read_sql_query``, ``read_sql_table``, ``DataFrame.to_sql``) is
recorded with the database it reaches, without credentials (a URL, an SQLAlchemy engine
or connection, a sqlite3 connection's file) and ``db.collection.name`` when a table is
named; never the query.  Another DB-API connection says nothing about its database and
is not recorded.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument
from otel_audit.resources import ResourcePolicy, printable


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


# SQL: (parameter naming the connection, always second; parameter naming the table or None, first; action)
SQL: dict[str, tuple[str, str | None, str]] = {
    "read_sql": ("con", "sql", schema.ACTION_READ),  # the table when ``sql`` is a bare table name
    "read_sql_query": ("con", None, schema.ACTION_READ),
    "read_sql_table": ("con", "table_name", schema.ACTION_READ),
    "to_sql": ("con", "name", schema.ACTION_WRITE),
}
_TABLE_NAME = re.compile(r"[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?")


def _database(policy: ResourcePolicy, con) -> dict | None:
    """The database a pandas SQL call reaches, without credentials: a URL, an SQLAlchemy engine or
    connection, or a sqlite3 connection (its main database file)."""
    if isinstance(con, str):
        return policy.describe_url(con) if "://" in con else None
    url = getattr(getattr(con, "engine", con), "url", None)  # SQLAlchemy Engine, Connection
    if url is not None:
        return policy.describe_url(str(url))
    if type(con).__module__ == "sqlite3" and type(con).__name__ == "Connection":
        try:  # read-only, no transaction: the files attached to the connection
            files = {name: file for _, name, file in con.execute("PRAGMA database_list").fetchall()}
        except Exception:  # closed, or used from another thread: the call will say so itself
            return None
        return policy.describe_path(files["main"]) if files.get("main") else None
    return None  # another DB-API connection: nothing says which database it is


def _sql_describer(function: str):
    connection, table, action = SQL[function]

    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        attributes = _database(policy, argument(args, kwargs, 1, connection))
        if attributes is None:
            return None
        name = argument(args, kwargs, 0, table) if table else None
        if isinstance(name, str) and _TABLE_NAME.fullmatch(name):  # never a query: its text holds data
            attributes[schema.DB_COLLECTION_NAME] = printable(name)
        attributes[schema.AUDIT_ACTION] = action
        kind = "DataFrame." if function == "to_sql" else ""
        attributes[schema.AUDIT_API] = f"pandas.{kind}{function}"
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
    for function in SQL:
        owner = module if function != "to_sql" else next(
            (cls for cls in module.DataFrame.__mro__ if function in vars(cls)), None)
        if owner is not None and hasattr(owner, function):
            point.wrap(owner, function, point.audited(None, None, _sql_describer(function)))


ACCESS_POINT = AccessPoint("pandas", {"pandas": _patch_pandas})
