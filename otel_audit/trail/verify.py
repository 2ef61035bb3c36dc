"""``otel-audit verify``: is a trail whole?  Each stream's chain checked from the OTLP/JSON files alone.

Records are read from one or more trail files (rotated parts, several services merged, in any order
across and within files: a record's place is its ``audit.seq``, not where it lies), grouped into
streams (``service.instance.id``) and indexed in a temporary SQLite database, so a trail of any size
is read in bounded memory.  Then each stream is walked in ``audit.seq`` order, every record's
``audit.chain.hash`` recomputed from the previous one and its own canonical form
(:func:`otel_audit.schema.canonical_record`), and what does not hold is named:

* **altered**: a record whose hash does not follow (its content, or its hash, was changed);
* **missing**: ``audit.seq`` ranges not in the trail; the record after a gap cannot be checked
  (its predecessor is gone): **unverifiable**;
* **inserted**: a record that claims a place in the chain it does not fit (another record there
  fits), or that comes after the stream's closing record without following it;
* **duplicated**: identical copies of one record (at-least-once delivery: said, not an error);
* **unclosed**: the stream does not end with its closing checkpoint (the process was killed, or the
  end of the trail was cut off);
* checkpoint signatures, with ``--public-key``: each checkpoint's Ed25519 signature of the stream, its
  length and its hash.

A stream is **intact** when none of the above (duplicates aside) holds and, with ``--public-key``, every
checkpoint's signature verifies; the trail verifies when every stream is intact and closed.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field

from otel_audit import chain as audit_chain
from otel_audit import schema
from otel_audit.trail import STDIN, display_path

NO_STREAM = "(no service.instance.id)"
OWN_EVENTS = (schema.EVENT_NAME, schema.LIFECYCLE_EVENT_NAME, schema.CHECKPOINT_EVENT_NAME)
_BATCH = 2000  # rows inserted at a time
MAX_LISTED = 20  # seq numbers or ranges listed per kind of problem; the rest are counted
RECENT = 32  # a record that does not follow its predecessor is tried against this many before it


class Unreadable(ValueError):
    """A line that is not OTLP/JSON logs."""


def _value(value):
    """An OTLP/JSON ``AnyValue`` as the value the program recorded (so that its canonical form is the producer's)."""
    if not isinstance(value, dict) or not value:
        return None
    kind, raw = next(iter(value.items()))
    if kind == "stringValue":
        return str(raw)
    if kind == "intValue":
        return int(raw)
    if kind == "boolValue":
        return bool(raw)
    if kind == "doubleValue":
        return float(raw)  # (a number, or "NaN", "Infinity", "-Infinity")
    if kind == "bytesValue":
        return base64.b64decode(raw)
    if kind == "arrayValue":
        return [_value(v) for v in (raw or {}).get("values") or []]
    if kind == "kvlistValue":
        return _attributes((raw or {}).get("values"))
    raise Unreadable(f"an AnyValue of kind {kind!r}")


def _attributes(items) -> dict:
    if not items:
        return {}
    if not isinstance(items, list):
        raise Unreadable("attributes are not a list")
    return {str(item["key"]): _value(item.get("value")) for item in items}


@dataclass
class Row:
    stream: str
    seq: int
    chain: str  # the hash it claims ("" when none)
    digest: bytes  # SHA-256 of its canonical form
    event: str
    final: bool
    signature: str
    key_id: str
    algorithm: str
    service: str
    where: str


def records_of_line(line: str, where: str) -> tuple[list[Row], int]:
    """The otel-audit records of one OTLP/JSON line as rows, and how many other log records it held."""
    document = json.loads(line)
    if not isinstance(document, dict) or not isinstance(document.get("resourceLogs"), list):
        raise Unreadable("not an OTLP/JSON logs request")
    rows, other = [], 0
    for resource_logs in document["resourceLogs"]:
        resource = _attributes(((resource_logs or {}).get("resource") or {}).get("attributes"))
        stream = str(resource.get("service.instance.id") or NO_STREAM)
        service = str(resource.get("service.name") or "")
        for scope_logs in resource_logs.get("scopeLogs") or []:
            scope = scope_logs.get("scope") or {}
            for log in scope_logs.get("logRecords") or []:
                event = str(log.get("eventName") or "")
                if event not in OWN_EVENTS:
                    other += 1
                    continue
                attributes = _attributes(log.get("attributes"))
                canonical = schema.canonical_record(
                    resource=resource, scope_name=str(scope.get("name") or ""),
                    scope_version=str(scope.get("version") or ""),
                    time_unix_nano=int(log.get("timeUnixNano") or 0),
                    observed_time_unix_nano=int(log.get("observedTimeUnixNano") or 0),
                    severity_number=int(log.get("severityNumber") or 0), severity_text=str(log.get("severityText") or ""),
                    body=_value(log.get("body")), event_name=event, trace_id=str(log.get("traceId") or "").lower(),
                    span_id=str(log.get("spanId") or "").lower(), flags=int(log.get("flags") or 0),
                    attributes=attributes)
                seq = attributes.get(schema.AUDIT_SEQ)
                rows.append(Row(
                    stream=stream, seq=seq if type(seq) is int else -1,
                    chain=str(attributes.get(schema.AUDIT_CHAIN_HASH) or ""),
                    digest=hashlib.sha256(canonical).digest(), event=event,
                    final=attributes.get(schema.AUDIT_CHECKPOINT_FINAL) is True,
                    signature=str(attributes.get(schema.AUDIT_CHECKPOINT_SIGNATURE) or ""),
                    key_id=str(attributes.get(schema.AUDIT_CHECKPOINT_KEY_ID) or ""),
                    algorithm=str(attributes.get(schema.AUDIT_CHAIN_ALGORITHM) or ""), service=service, where=where))
    return rows, other


@dataclass
class StreamReport:
    stream: str
    service: str = ""
    records: int = 0  # distinct records
    last_seq: int = 0
    checkpoints: int = 0
    closed: bool = False
    algorithm: str = ""
    altered: list = field(default_factory=list)  # seq
    missing: list = field(default_factory=list)  # [first, last]
    unverifiable: list = field(default_factory=list)  # seq
    inserted: list = field(default_factory=list)  # seq
    duplicates: int = 0
    unchained: int = 0  # records with no audit.seq or no audit.chain.hash
    signatures: str = "none"  # "verified", "unsigned", "failed", "none" (no --public-key)
    bad_signatures: list = field(default_factory=list)  # seq
    problems: list = field(default_factory=list)  # sentences
    needs_key: bool = False  # a keyed chain read without the key: not checked
    unchained_only: bool = False  # no record of it carries a chain: nothing to check

    @property
    def intact(self) -> bool:
        return not (self.altered or self.missing or self.unverifiable or self.inserted or self.unchained
                    or self.bad_signatures or self.problems or self.signatures in ("failed", "unsigned"))

    def as_json(self) -> dict:
        return {"stream": self.stream, "service": self.service, "intact": self.intact, "closed": self.closed,
                "records": self.records, "last_seq": self.last_seq, "checkpoints": self.checkpoints,
                "algorithm": self.algorithm, "altered": self.altered, "missing": self.missing,
                "unverifiable": self.unverifiable, "inserted": self.inserted, "duplicates": self.duplicates,
                "unchained": self.unchained, "signatures": self.signatures, "bad_signatures": self.bad_signatures,
                "needs_key": self.needs_key, "unchained_only": self.unchained_only, "problems": self.problems}


@dataclass
class VerifyReport:
    streams: list[StreamReport] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: int = 0
    unreadable: list = field(default_factory=list)  # "file:line: why"
    truncated: list = field(default_factory=list)  # files whose last line is cut off
    other_records: int = 0
    _streams_by_name: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return bool(self.streams) and not self.unreadable and not self.truncated and all(
            s.intact and s.closed for s in self.streams)

    @property
    def tampered(self) -> bool:
        """A stream's records altered, missing, inserted, unverifiable, or its signatures failing (not: an unclosed
        stream, whose process may still be running; lines unreadable or cut off, which readers report as they
        read; a chain that cannot be checked, which :func:`problem_lines` says)."""
        return any(not s.intact and not s.needs_key and not s.unchained_only for s in self.streams)

    def verified_record(self, stream, seq) -> bool:
        """Whether the record ``seq`` of ``stream`` is one whose chain link holds (in an intact stream, or in one
        whose problems are elsewhere)."""
        found = self._by_stream().get(str(stream or NO_STREAM))
        if found is None or type(seq) is not int or not 1 <= seq <= found.last_seq:
            return False
        if found.problems or found.signatures in ("failed", "unsigned"):
            return False  # (a wrong key, an unkeyed chain checked with a key, unsigned: nothing holds)
        bad = set(found.altered) | set(found.unverifiable) | set(found.inserted)
        return seq not in bad and not any(first <= seq <= last for first, last in found.missing)

    def _by_stream(self) -> dict:
        if len(self._streams_by_name) != len(self.streams):  # (made once, after the streams are known)
            self._streams_by_name = {s.stream: s for s in self.streams}
        return self._streams_by_name

    def as_json(self) -> dict:
        return {"ok": self.ok, "files": self.files, "lines": self.lines, "unreadable": self.unreadable,
                "truncated": self.truncated, "other_records": self.other_records,
                "streams": [s.as_json() for s in self.streams]}


def verify(paths: list[str], *, key: bytes | None = None, public_key=None, stdin=None) -> VerifyReport:
    """Verify the trail in ``paths``; raises ``OSError`` for a file that cannot be read."""
    report = VerifyReport(files=[display_path(p) for p in paths])
    with tempfile.TemporaryDirectory(prefix="otel-audit-verify-") as directory:
        database = sqlite3.connect(os.path.join(directory, "index.db"))
        try:
            database.execute("CREATE TABLE r (stream TEXT, seq INTEGER, chain TEXT, digest BLOB, event TEXT, "
                             "final INTEGER, signature TEXT, key_id TEXT, algorithm TEXT, service TEXT, place TEXT)")
            for path in paths:
                _index_file(database, path, report, stdin)
            database.execute("CREATE INDEX by_seq ON r (stream, seq)")
            streams = [row[0] for row in database.execute("SELECT DISTINCT stream FROM r ORDER BY stream")]
            for stream in streams:
                report.streams.append(_verify_stream(database, stream, key, public_key))
        finally:
            database.close()
    return report


def _index_file(database, path: str, report: VerifyReport, stdin) -> None:
    shown = display_path(path)
    handle = stdin if path == STDIN else open(path, "rb")  # (the verifier is no audited program)
    try:
        batch = []
        number = 0
        for number, raw in enumerate(handle, 1):
            report.lines += 1
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogateescape")
            if not raw.endswith(b"\n"):
                report.truncated.append(f"{shown}: its last line ({number}) is cut off")
                if not raw.strip():
                    continue
            if not raw.strip():
                continue
            try:
                rows, other = records_of_line(raw.decode("utf-8"), f"{shown}:{number}")
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                if raw.endswith(b"\n"):
                    report.unreadable.append(f"{shown}:{number}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            report.other_records += other
            batch.extend((r.stream, r.seq, r.chain, r.digest, r.event, int(r.final), r.signature, r.key_id,
                          r.algorithm, r.service, r.where) for r in rows)
            if len(batch) >= _BATCH:
                database.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
                batch = []
        if batch:
            database.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
    finally:
        if handle is not stdin:
            handle.close()


def _verify_stream(database, stream: str, key: bytes | None, public_key) -> StreamReport:
    report = StreamReport(stream)
    rows = database.execute("SELECT seq, chain, digest, event, final, signature, key_id, algorithm, service, place "
                            "FROM r WHERE stream = ? ORDER BY seq, chain, digest", (stream,))
    previous: bytes | None = audit_chain.GENESIS  # None: not known (after a gap or an unverifiable record)
    expected = 1
    closed_at = None  # the seq of the last closing checkpoint that fit
    fits_any = False
    group: list = []
    recent: collections.deque = collections.deque(maxlen=RECENT)  # the last records' hashes

    def settle(group: list) -> None:
        nonlocal previous, expected, closed_at, fits_any
        seq = group[0][0]
        distinct = list({(row[1], row[2]): row for row in group}.values())
        report.duplicates += len(group) - len(distinct)
        report.service = report.service or group[0][8]
        if closed_at is not None and seq > closed_at and not any(
                previous is not None and _links(previous, row, key) for row in distinct):
            report.inserted.append(seq)  # after the closing record, and not following it: not the process's
            return
        report.records += 1
        if seq > expected:
            report.missing.append([expected, seq - 1])
            previous = None
        fitting = [row for row in distinct if previous is not None and _links(previous, row, key)]
        if not fitting and previous is not None:
            # one that follows a record nearby instead (records around it changed places or were altered):
            # its own content is what was chained, so it is not what was tampered with
            fitting = [row for row in distinct if any(_links(p, row, key) for p in recent if p != previous)]
        if fitting:
            chosen = fitting[0]
            fits_any = True
        else:
            chosen = distinct[0]
            if previous is None:
                report.unverifiable.append(seq)
            else:
                report.altered.append(seq)
        report.inserted.extend(seq for row in distinct if row is not chosen)
        if chosen[3] == schema.CHECKPOINT_EVENT_NAME:
            report.checkpoints += 1
            report.algorithm = chosen[7] or report.algorithm
            _check_signature(report, stream, seq, chosen, public_key)
            if chosen[4]:
                closed_at = seq
        elif chosen[3] == schema.LIFECYCLE_EVENT_NAME and chosen[7]:
            report.algorithm = report.algorithm or chosen[7]
        try:
            previous = bytes.fromhex(chosen[1])
            recent.append(previous)
        except ValueError:
            previous = None
        expected = seq + 1
        report.last_seq = seq

    for row in rows:
        if row[0] < 1 or not row[1]:
            report.unchained += 1
            continue
        if group and row[0] != group[0][0]:
            settle(group)
            group = []
        group.append(row)
    if group:
        settle(group)
    report.closed = closed_at is not None and closed_at == report.last_seq
    if report.unchained and not report.records:  # (a trail from before the chain, or not otel-audit's)
        report.unchained_only = True
        report.problems.append("its records carry no audit.chain.hash: written by an otel-audit without the chain, "
                               "or not by otel-audit; NOT verifiable")
    elif key is None and report.algorithm == schema.CHAIN_HMAC_SHA256:  # no key, no judgement on its links
        report.needs_key = True
        report.altered, report.unverifiable = [], []
        report.problems.append("its chain is keyed (HMAC-SHA256): not checked without --key-file")
    elif report.records and not fits_any:
        report.problems.append("no record follows from its predecessor: "
                               + ("a wrong --key-file?" if key is not None else "every record altered?"))
    if key is not None and report.algorithm == schema.CHAIN_SHA256:
        report.problems.append("the chain is plain SHA-256, not keyed: --key-file was not in use when it was written")
    if public_key is not None and report.signatures == "none" and report.records:
        report.signatures = "unsigned"
        report.problems.append("no signed checkpoint to check with --public-key")
    return report


def _links(previous: bytes, row, key: bytes | None) -> bool:
    try:
        claimed = bytes.fromhex(row[1])
    except ValueError:
        return False
    return audit_chain.next_hash(previous, row[2], key) == claimed


def _check_signature(report: StreamReport, stream: str, seq: int, row, public_key) -> None:
    if public_key is None:
        return
    signature = row[5]
    if not signature:
        if report.signatures != "unsigned":
            report.problems.append("its checkpoints are not signed: nothing for --public-key to check (written "
                                   "without OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE)")
        report.signatures = "unsigned"
        return
    try:
        public_key.verify(bytes.fromhex(signature), audit_chain.checkpoint_message(stream, seq, row[1]))
    except Exception:
        report.bad_signatures.append(seq)
        report.signatures = "failed"
        return
    if report.signatures == "none":
        report.signatures = "verified"


# -- text ------------------------------------------------------------------------------------------

def problem_lines(report: VerifyReport) -> list[str]:
    """One line per stream that does not verify or cannot be checked, for ``show`` and ``report``."""
    lines = []
    for s in report.streams:
        if s.intact:
            continue
        name = f"stream {s.stream}" + (f" ({s.service})" if s.service else "")
        if s.needs_key:
            lines.append(f"{name}: its chain is keyed: not checked (give --key-file)")
            continue
        if s.unchained_only:
            lines.append(f"{name}: {s.unchained} records with no audit.chain.hash: the trail cannot be checked")
            continue
        found = [f"{label} seq {_ranges(values)}" for label, values in (
            ("altered", s.altered), ("missing", s.missing), ("unverifiable", s.unverifiable),
            ("inserted", s.inserted), ("bad signature at", s.bad_signatures)) if values]
        found += s.problems + ([f"{s.unchained} records not in the chain"] if s.unchained else [])
        lines.append(f"the trail does NOT verify: stream {s.stream}" + (f" ({s.service})" if s.service else "")
                     + ": " + "; ".join(found) + " (otel-audit verify for details)")
    unclosed = [s for s in report.streams if s.intact and not s.closed]
    if unclosed:
        lines.append(f"{len(unclosed)} streams have no closing record yet (their processes run, or were killed)")
    return lines


def _ranges(values: list) -> str:
    parts = []
    for value in values[:MAX_LISTED]:
        parts.append(f"{value[0]}" if isinstance(value, list) and value[0] == value[1] else
                     f"{value[0]}-{value[1]}" if isinstance(value, list) else str(value))
    more = len(values) - MAX_LISTED
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def render_text(report: VerifyReport) -> str:
    lines = []
    for s in report.streams:
        name = f"stream {s.stream}" + (f" ({s.service})" if s.service else "")
        state = "intact" if s.intact else "NOT INTACT"
        closing = "closed" if s.closed else "UNCLOSED (no closing record: the process was killed, or the end was cut off)"
        signed = {"verified": ", checkpoint signatures verified", "failed": "", "unsigned": "",
                  "none": ""}[s.signatures]
        lines.append(f"{name}: {state}, {closing}: {s.records} records (seq 1-{s.last_seq}), {s.checkpoints} "
                     f"checkpoints, {s.algorithm or 'unknown algorithm'}{signed}")
        for label, values in (("altered", s.altered), ("missing", s.missing),
                              ("unverifiable (after missing records)", s.unverifiable),
                              ("inserted (not in the chain)", s.inserted),
                              ("checkpoint signature does NOT verify", s.bad_signatures)):
            if values:
                lines.append(f"  {label}: seq {_ranges(values)}")
        if s.unchained:
            lines.append(f"  {s.unchained} records without audit.seq or audit.chain.hash: not part of the chain")
        if s.duplicates:
            lines.append(f"  {s.duplicates} duplicate copies (at-least-once delivery: not an error)")
        for problem in s.problems:
            lines.append(f"  {problem}")
    for line in report.truncated:
        lines.append(f"TRUNCATED: {line}")
    for line in report.unreadable[:MAX_LISTED]:
        lines.append(f"unreadable: {line}")
    if len(report.unreadable) > MAX_LISTED:
        lines.append(f"unreadable: {len(report.unreadable) - MAX_LISTED} more lines")
    if not report.streams:
        lines.append("no otel-audit records found")
    if report.other_records:
        lines.append(f"{report.other_records} log records that are not otel-audit's were left out")
    verdict = "the trail verifies" if report.ok else "the trail does NOT verify"
    lines.append(f"{verdict}: {len(report.streams)} streams, {report.lines} lines in {len(report.files)} files")
    return "\n".join(lines) + "\n"
