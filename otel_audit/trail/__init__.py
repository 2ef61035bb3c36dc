"""Reading audit trails: OTLP/JSON lines files back into records, with every problem on record.

The trail stage: this module reads trails; :mod:`otel_audit.trail.report` is ``show``'s table and
``report``'s aggregation; :mod:`otel_audit.trail.verify` proves a trail whole (``otel-audit verify``).

A trail file holds one OTLP/JSON ``ExportLogsServiceRequest`` per line, as the
``audit_file`` sink and the OpenTelemetry Collector's ``file`` exporter write
it.  Reading it::

    records, errors = read_trails(["otel-audit.jsonl", "collector/audit.jsonl"])
    wanted = RecordFilter(users=("alice",), outcomes=("denied",), since_ns=parse_time("2h"))
    for record in sorted(records):
        if wanted.matches(record): ...

* :class:`Record` is one ``audit.access`` log record, attributes by the names
  of :mod:`otel_audit.schema`.  A record that lacks a required attribute is
  still returned (its missing values read ``None``) *and* reported as an error:
  an audit reader never hides what it could read.
* :class:`TrailError` names the file and line of each problem: a line that is
  not OTLP/JSON, invalid UTF-8, an unreadable file.  One bad line never hides the
  valid lines around it.
* Log records that are not ``audit.access`` events (application logs sharing a
  collector's file) are not audit records: they are counted in
  :attr:`TrailFile.skipped`, so the command can say how many it left out.
* :class:`TrailFile` reads a file incrementally, which is what ``show --follow``
  polls: only complete lines are parsed (a line being written waits for its
  newline), and a truncated or rotated file is reopened from its start.
* ``-`` is standard input.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from otel_audit import schema

STDIN = "-"
_CHUNK = 1 << 20  # bytes read at a time
SERVICE_NAME = "service.name"  # resource attribute (OpenTelemetry semantic conventions)


@dataclass(frozen=True)
class TrailError:
    """A problem with the input: ``path:line: message`` (``line`` is 0 for the file as a whole)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def _attribute_text(name: str) -> property:
    """A read-only property: the record's attribute ``name`` as text."""
    return property(lambda record: record.text(name), doc=f"``{name}`` as text, or None")


@dataclass(frozen=True)
class Record:
    """One ``audit.access`` record as written; ``source`` is ``path:line`` of the line that carried it."""

    time_ns: int
    attributes: Mapping[str, object]
    body: str
    severity: str
    trace_id: str
    span_id: str
    resource_attributes: Mapping[str, object]
    source: str

    def text(self, name: str) -> str | None:
        value = self.attributes.get(name)
        return None if value is None else str(value)

    # Attributes read as text, by the schema's names (None when the record lacks one).
    user = _attribute_text(schema.USER_NAME)
    enduser = _attribute_text(schema.ENDUSER_ID)
    action = _attribute_text(schema.AUDIT_ACTION)
    outcome = _attribute_text(schema.AUDIT_OUTCOME)
    error_type = _attribute_text(schema.ERROR_TYPE)
    resource = _attribute_text(schema.AUDIT_RESOURCE_URI)
    resource_type = _attribute_text(schema.AUDIT_RESOURCE_TYPE)
    api = _attribute_text(schema.AUDIT_API)
    file_path = _attribute_text(schema.FILE_PATH)
    record_id = _attribute_text(schema.AUDIT_RECORD_ID)

    @property
    def service(self) -> str | None:
        value = self.resource_attributes.get(SERVICE_NAME)
        return None if value is None else str(value)

    @property
    def principal(self) -> str:
        """Who made the access, as the record body says it: ``alice`` or ``svc (for bob)``."""
        return schema.principal_text(self.user if self.user is not None else "?", self.enduser)

    @property
    def outcome_detail(self) -> str:
        """``success``, ``failure: FileNotFoundError``, ``denied: AccessDenied``."""
        return schema.outcome_text(self.outcome if self.outcome is not None else "?", self.error_type)

    @property
    def call_site(self) -> str:
        path = self.text(schema.CODE_FILE_PATH)
        line = self.text(schema.CODE_LINE_NUMBER)
        return f"{path if path is not None else '?'}:{line if line is not None else '?'}"

    @property
    def is_problem(self) -> bool:
        """A failure or a denial: what an auditor looks at first."""
        return self.outcome != schema.OUTCOME_SUCCESS


# -- decoding ----------------------------------------------------------------

_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
          bool: "true or false", type(None): "null"}


class Malformed(ValueError):
    """A line that is not OTLP/JSON logs; the message says where and what, in OTLP's own terms."""


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise Malformed(f"{where} is {_kind(value)}, not an object")
    return value


def _list(container: dict, key: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{f'{where}.' if where else ''}{key} is {_kind(value)}, not a list")
    return value


def _any_value(value: object, where: str) -> object:
    """An OTLP/JSON ``AnyValue`` as a plain value (int64 arrives as a string or a number)."""
    if not isinstance(value, dict) or not value:
        return None
    kind, raw = next(iter(value.items()))
    if kind == "intValue":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise Malformed(f"{where}.intValue is {_kind(raw)}, not an integer") from None
    if kind == "arrayValue":
        items = _list(_object(raw, f"{where}.arrayValue"), "values", f"{where}.arrayValue")
        return [_any_value(v, f"{where}.arrayValue.values[{i}]") for i, v in enumerate(items)]
    if kind == "kvlistValue":
        return _key_values(_object(raw, f"{where}.kvlistValue").get("values"), f"{where}.kvlistValue.values")
    return raw


def _key_values(items: object, where: str) -> dict:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise Malformed(f"{where} is {_kind(items)}, not a list")
    values = {}
    for index, item in enumerate(items):
        item = _object(item, f"{where}[{index}]")
        key = item.get("key")
        if not isinstance(key, str):
            raise Malformed(f"{where}[{index}] has no key")
        values[key] = _any_value(item.get("value"), f"{where}[{index}].value")
    return values


def _is_audit_record(log: dict, scope: dict) -> bool:
    # eventName is the schema's marker; the scope name also identifies writers that drop eventName.
    event = log.get("eventName")
    return event == schema.EVENT_NAME or (not event and scope.get("name") == schema.SCOPE_NAME)


def _nanoseconds(log: dict, key: str, where: str) -> int:
    value = log.get(key) or 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Malformed(f"{where}.{key} is {_kind(value)}, not a time in nanoseconds") from None


def decode_line(line: str, path: str, number: int) -> tuple[list[Record], list[TrailError], int]:
    """The audit records in one OTLP/JSON line, problems found, and how many non-audit log records it held.

    Raises :class:`Malformed` (a ``ValueError``) when the line is not an OTLP/JSON logs request,
    saying where and what in OTLP's terms (``resourceLogs[0].scopeLogs is a string, not a list``).
    """
    try:
        return _decode_document(line, path, number)
    except RecursionError:
        raise Malformed("nested too deeply to be OTLP/JSON") from None


def _decode_document(line: str, path: str, number: int) -> tuple[list[Record], list[TrailError], int]:
    try:
        document = json.loads(line)
    except ValueError as exc:
        reason = f"{exc.msg} at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else "invalid"
        raise Malformed(f"not JSON ({reason})") from None
    if not isinstance(document, dict) or "resourceLogs" not in document:
        found = (f"an object with {', '.join(sorted(map(str, document))[:5]) or 'no keys'}"
                 if isinstance(document, dict) else _kind(document))
        raise Malformed(f"not an OTLP/JSON logs request: {found}, where an object with resourceLogs is expected")
    records, problems, skipped = [], [], 0
    for r, resource_logs in enumerate(_list(document, "resourceLogs", "")):
        where_r = f"resourceLogs[{r}]"
        resource_logs = _object(resource_logs, where_r)
        resource_json = _object(resource_logs.get("resource") or {}, f"{where_r}.resource")
        resource = _key_values(resource_json.get("attributes"), f"{where_r}.resource.attributes")
        for s, scope_logs in enumerate(_list(resource_logs, "scopeLogs", where_r)):
            where_s = f"{where_r}.scopeLogs[{s}]"
            scope_logs = _object(scope_logs, where_s)
            scope = _object(scope_logs.get("scope") or {}, f"{where_s}.scope")
            for n, log in enumerate(_list(scope_logs, "logRecords", where_s)):
                where = f"{where_s}.logRecords[{n}]"
                log = _object(log, where)
                if log.get("eventName") in (schema.LIFECYCLE_EVENT_NAME, schema.CHECKPOINT_EVENT_NAME):
                    continue  # otel-audit's own lifecycle (started, hook_failed...) and checkpoints: not accesses
                if not _is_audit_record(log, scope):
                    skipped += 1
                    continue
                attributes = _key_values(log.get("attributes"), f"{where}.attributes")
                time_ns = _nanoseconds(log, "timeUnixNano", where) or _nanoseconds(log, "observedTimeUnixNano", where)
                record = Record(
                    time_ns=time_ns,
                    attributes=attributes,
                    body=str(_any_value(log.get("body"), f"{where}.body") or ""),
                    severity=str(log.get("severityText") or ""),
                    trace_id=str(log.get("traceId") or "").lower(),
                    span_id=str(log.get("spanId") or "").lower(),
                    resource_attributes=resource,
                    source=f"{path}:{number}",
                )
                missing = sorted(schema.REQUIRED_ATTRIBUTES - attributes.keys())
                if missing:
                    problems.append(TrailError(path, number, f"audit record lacks {', '.join(missing)} (shown with '?')"))
                if not time_ns:
                    problems.append(TrailError(path, number, "audit record has no timestamp (shown as the earliest)"))
                records.append(record)
    return records, problems, skipped


# -- reading files -----------------------------------------------------------

MAX_LISTED_PROBLEMS = 20  # per file: past that they are counted, not listed

def display_path(path: str) -> str:
    return "<stdin>" if path == STDIN else path


class TrailFile:
    """A trail file read incrementally: call :meth:`read` again to get what was appended since.

    Only complete lines are decoded; ``read(final=True)`` (a one-shot read) also
    decodes a last line without its newline, and reports it if it does not parse
    (a writer died mid-line).  When the file shrinks (truncated) or its path names
    another file (rotated), the old file is read to its end and the new one from
    its start.  A truncation that regrows past the read position between two
    polls cannot be told from an append (as with ``tail -F``).
    """

    def __init__(self, path: str):
        self.path = path
        self.name = display_path(path)
        self.skipped = 0  # log records that are not audit.access events
        self.records_read = 0
        self._stream: io.BufferedReader | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._line = 0
        self._partial = b""
        self._missing_reported = False
        self.problems = 0  # every problem found, listed or not
        self._unlisted = 0

    def _problem(self, errors: list[TrailError], error: TrailError) -> None:
        """List a problem, up to :data:`MAX_LISTED_PROBLEMS` per file (a binary file is one problem a line)."""
        self.problems += 1
        if self.problems <= MAX_LISTED_PROBLEMS:
            errors.append(error)
        else:
            self._unlisted += 1

    # The stream is binary: a line of invalid UTF-8 is one bad line, not an unreadable file.
    def _open(self) -> None:
        if self.path == STDIN:
            self._stream = sys.stdin.buffer
            self._identity = None
        else:
            self._stream = open(self.path, "rb")
            info = os.fstat(self._stream.fileno())
            self._identity = (info.st_dev, info.st_ino)
        self._position = 0
        self._line = 0
        self._partial = b""

    def close(self) -> None:
        if self._stream is not None and self.path != STDIN:
            self._stream.close()
        self._stream = None

    def _replaced(self) -> str | None:
        """Why the open file is no longer the one at ``path`` (``None`` while it still is)."""
        if self.path == STDIN or self._stream is None:
            return None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None  # moved away and not yet recreated: keep reading the old one
        if (info.st_dev, info.st_ino) != self._identity:
            return "replaced (rotated)"
        if info.st_size < self._position:
            return "truncated"
        return None

    def read(self, final: bool = True) -> tuple[list[Record], list[TrailError], list[str]]:
        """New records, problems, and notices (reopened after rotation...) since the last call.

        ``final``: the file is complete, so a last line without a newline is decoded
        now rather than waited for.
        """
        records: list[Record] = []
        errors: list[TrailError] = []
        notices: list[str] = []
        if self._stream is None:
            if not self._open_or_report(errors):
                return records, errors, notices
            if self._missing_reported:
                notices.append(f"{self.name}: now readable, reading it")
                self._missing_reported = False
        reason = self._replaced()
        self._drain(records, errors, final=final or reason is not None)
        if reason is not None:
            notices.append(f"{self.name}: {reason}; reading it again from its start")
            self.close()
            if not self._open_or_report(errors):
                return records, errors, notices
            self._drain(records, errors, final=final)
        if self._unlisted and final:
            errors.append(TrailError(self.name, 0, f"{self._unlisted} more problems in this file, not listed "
                                                   f"(the first {MAX_LISTED_PROBLEMS} are)"))
            self._unlisted = 0
        return records, errors, notices

    def _open_or_report(self, errors: list[TrailError]) -> bool:
        """Open the file; if it cannot be, say so once (a followed file may stay missing for a while)."""
        try:
            self._open()
            return True
        except OSError as exc:
            if not self._missing_reported:
                self._problem(errors, TrailError(self.name, 0, f"cannot read: {exc.strerror or exc}"))
                self._missing_reported = True
            return False

    def _drain(self, records: list[Record], errors: list[TrailError], final: bool) -> None:
        """Decode the complete lines from the position to the end of the file, a chunk at a time."""
        assert self._stream is not None
        while True:
            try:
                chunk = self._stream.read(_CHUNK)
            except OSError as exc:
                self._problem(errors, TrailError(self.name, 0, f"cannot read: {exc.strerror or exc}"))
                return
            if not chunk:
                break
            self._position += len(chunk)
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()  # b"" when the chunk ends with a newline
            for raw in lines:
                self._line += 1
                self._decode(raw, records, errors)
        if final and self._partial:
            self._line += 1
            self._decode(self._partial, records, errors)
            self._partial = b""

    def _decode(self, raw: bytes, records: list[Record], errors: list[TrailError]) -> None:
        if not raw.strip():
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._problem(errors, TrailError(self.name, self._line, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            return
        try:
            found, problems, skipped = decode_line(line, self.name, self._line)
        except ValueError as exc:
            self._problem(errors, TrailError(self.name, self._line, str(exc)))
            return
        records.extend(found)
        for problem in problems:
            self._problem(errors, problem)
        self.records_read += len(found)
        self.skipped += skipped


def read_trails(paths: Iterable[str]) -> tuple[list[Record], list[TrailError], list[TrailFile]]:
    """Every audit record in ``paths`` (in file order), every problem, and the files read (for their counts)."""
    records: list[Record] = []
    errors: list[TrailError] = []
    files = []
    for path in paths:
        trail = TrailFile(path)
        found, problems, _ = trail.read(final=True)
        trail.close()
        records.extend(found)
        errors.extend(problems)
        files.append(trail)
    return records, errors, files


def by_time(records: Iterable[Record]) -> list[Record]:
    """Oldest first; records of the same instant keep their input order."""
    return sorted(records, key=lambda record: record.time_ns)


# -- filters -----------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> int:
    """Nanoseconds since the epoch for ``--since``/``--until``.

    ISO 8601 (``2024-05-01``, ``2024-05-01T09:30``, ``2024-05-01T09:30:00+02:00``,
    ``...Z``; without an offset it is UTC, as the command prints times) or a
    duration before now: ``30s``, ``15m``, ``2h``, ``7d``, ``1w``.
    Raises ``ValueError`` with the accepted forms.
    """
    relative = _RELATIVE.match(text)
    if relative:
        now = now or datetime.now(timezone.utc)
        moment = now - timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is neither an ISO 8601 time (2024-05-01T09:30:00Z) "
                             "nor a duration before now (30s, 15m, 2h, 7d, 1w)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _resource_globs(pattern: str) -> tuple[str, ...]:
    """What ``--resource PATTERN`` is matched as, given what people type.

    ``s3://bucket/*`` and ``file:///data/*`` match the URI; ``/data/*.csv`` the
    local path; a relative ``data/*.csv`` or ``customers.csv`` the end of a
    path (any directory above it); a trailing ``/`` everything under it.
    """
    if pattern.endswith("/"):
        pattern += "*"
    globs = [pattern]
    if "://" not in pattern and not pattern.startswith(("/", "*")):
        globs.append("*/" + pattern)
    return tuple(globs)


@dataclass(frozen=True)
class RecordFilter:
    """The ``show``/``report`` filters; each given one must match (values within one are alternatives)."""

    users: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    since_ns: int | None = None  # inclusive
    until_ns: int | None = None  # exclusive
    _resource_globs: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_resource_globs", tuple(g for p in self.resources for g in _resource_globs(p)))

    def matches(self, record: Record) -> bool:
        if self.since_ns is not None and record.time_ns < self.since_ns:
            return False
        if self.until_ns is not None and record.time_ns >= self.until_ns:
            return False
        if self.actions and record.action not in self.actions:
            return False
        if self.outcomes and record.outcome not in self.outcomes:
            return False
        if self.users and not any(
            name is not None and fnmatch.fnmatchcase(name, pattern)
            for pattern in self.users for name in (record.user, record.enduser)
        ):
            return False
        if self._resource_globs:
            names = [record.resource, record.file_path]
            if record.resource and record.resource.startswith("file://"):
                # the URI is percent-encoded; people type the path
                names += [unquote(record.resource), unquote(urlsplit(record.resource).path)]
            if not any(
                name and fnmatch.fnmatchcase(name, glob) for glob in self._resource_globs for name in names
            ):
                return False
        return True

    def describe(self) -> dict:
        """The filters as given, for reports (``None``/empty: not filtered)."""
        return {
            "user": list(self.users),
            "resource": list(self.resources),
            "action": list(self.actions),
            "outcome": list(self.outcomes),
            "since": format_time(self.since_ns) if self.since_ns is not None else None,
            "until": format_time(self.until_ns) if self.until_ns is not None else None,
        }

    @property
    def active(self) -> bool:
        return bool(self.users or self.resources or self.actions or self.outcomes
                    or self.since_ns is not None or self.until_ns is not None)


def format_time(time_ns: int, digits: int = 6) -> str:
    """UTC ISO 8601 with ``Z``: ``2024-05-01T09:30:00.123456Z`` (``digits`` 3 or 6 after the second)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    fraction = f"{nanos:09d}"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"


__all__ = ["Record", "RecordFilter", "TrailError", "TrailFile", "by_time", "decode_line", "format_time",
           "parse_time", "read_trails", "STDIN"]
