"""sqlite3: ``sqlite3.connect``, the database file (SQLite reads and writes it in C).

The action comes from the URI mode (``uri=True``, ``file:db.sqlite?mode=ro``): ``ro`` is a
read; ``rw``, ``rwc`` and a plain path (SQLite opens it read-write, creating it) are
writes.  In-memory databases (``:memory:``, ``mode=memory``) name no file and are not
recorded.  The statements run on the connection afterwards are part of this record and
are never recorded themselves (their text holds the data).
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument, with_action
from otel_audit.resources import ResourcePolicy, fspath_or_none


def database_file(database: object, uri: bool) -> tuple[str | None, str]:
    """The file a ``connect`` names and its action: ``(path or None, action)``."""
    path = fspath_or_none(database)
    if path is None or path in ("", ":memory:"):
        return None, schema.ACTION_WRITE
    if uri and path.startswith("file:"):
        parts = urlsplit(path)
        mode = (parse_qs(parts.query).get("mode") or ["rwc"])[-1]
        file = unquote(parts.path)
        if mode == "memory" or file in ("", ":memory:"):
            return None, schema.ACTION_WRITE
        return file, schema.ACTION_READ if mode == "ro" else schema.ACTION_WRITE
    return path, schema.ACTION_WRITE


def _describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
    path, action = database_file(argument(args, kwargs, 0, "database"), bool(argument(args, kwargs, 7, "uri", False)))
    return with_action(policy.describe_path(path), action) if path is not None else None


def _patch_sqlite3(point: AccessPoint, module) -> None:
    point.wrap(module, "connect", point.audited("sqlite3.connect", None, _describe))


ACCESS_POINT = AccessPoint("sqlite3", {"sqlite3": _patch_sqlite3})
