"""Turning audit records into what a person reads: the ``show`` table and the ``report`` formats.

``show`` prints one aligned row per record::

    TIME                      USER              ACTION  TYPE  OUTCOME                     API              CALL SITE         RESOURCE
    2024-05-01T09:30:00.123Z  svc (for alice)   read    data  success                     pandas.read_csv  /app/train.py:20  file:///data/customers.csv
    2024-05-01T09:30:01.007Z  svc               read    data  denied: AccessDenied        s3.GetObject     /app/train.py:31  s3://bucket/secret.csv

The resource is the last column, so it is always shown in full and never
pushes the other columns out of line; a cell of another column that is longer
than that column's limit continues on the next line, in its column.

``report`` aggregates (:func:`aggregate`) who accessed what: per resource its
principals, per principal its resources, with counts, first and last seen,
failures and denials first.  Renderers: :func:`render_text`,
:func:`render_json`, :func:`render_csv`, :func:`render_html`.  A principal is
the OS user (``user.name``) together with the application end user
(``enduser.id``) when there is one: ``svc (for alice)``.  A record delivered
twice (same ``audit.record.id``, after a retry or a crash) counts once; how
many such duplicates were left out is part of the report.

Everything taken from a record is untrusted text:

* in the terminal (table, text report, CSV) characters that are not printable
  (ESC, other control characters, bidirectional overrides, zero-width
  characters) are shown as ``\\xNN``/``\\uNNNN`` escapes, never sent raw;
* JSON escapes them as JSON does (``\\u001b``) and is ASCII;
* CSV cells starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a
  leading ``'`` so that a spreadsheet shows them as text and never runs them
  as a formula;
* HTML: every string is HTML-escaped; the page loads nothing from outside and
  its Content-Security-Policy allows only its own inline script.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import html
import io
import json
import re
import unicodedata
from importlib import resources
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from otel_audit import schema
from otel_audit.trail import Record, RecordFilter, TrailError, format_time

REPORT_FORMAT_VERSION = 1
# Problems first wherever records are ranked: denials, then failures.
OUTCOME_RANK = {schema.OUTCOME_DENIED: 0, schema.OUTCOME_FAILURE: 1, schema.OUTCOME_SUCCESS: 3}
ABSENT = "-"  # an optional attribute the record does not carry


# -- text that is safe in a terminal ------------------------------------------

def visible(text: object) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\u202e``): safe to print."""
    return schema.escape_unprintable(ABSENT if text is None else str(text))


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in pieces of at most ``width`` columns (nothing is cut off)."""
    if display_width(text) <= width:
        return [text]
    pieces, current, used = [], [], 0
    for char in text:
        w = display_width(char)
        if used + w > width and current:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += w
    pieces.append("".join(current))
    return pieces


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


class Table:
    """Aligned columns, two spaces apart.  The last column is never padded or wrapped; a cell of
    another column wider than that column's limit continues on the next line(s), in its column."""

    def __init__(self, headers: Sequence[str], limits: Sequence[int], right: Sequence[int] = ()):
        self.headers = list(headers)
        self.limits = list(limits)  # the last column's limit is ignored
        self.right = set(right)  # right-aligned (numeric) columns
        self.widths = [display_width(h) for h in headers]

    def fit(self, rows: Iterable[Sequence[str]]) -> "Table":
        """Widen columns to the widest cell in ``rows``, up to each column's limit."""
        for row in rows:
            for index, cell in enumerate(row[:-1]):
                self.widths[index] = max(self.widths[index], min(self.limits[index], display_width(cell)))
        return self

    def header(self) -> str:
        return self.line(self.headers)[0]

    def line(self, row: Sequence[str]) -> list[str]:
        """The printed line(s) of one row of already escaped cells."""
        columns = [_wrap(cell, self.widths[i]) for i, cell in enumerate(row[:-1])] + [[row[-1]]]
        height = max(len(pieces) for pieces in columns)
        lines = []
        for n in range(height):
            cells = []
            for i, pieces in enumerate(columns):
                piece = pieces[n] if n < len(pieces) else ""
                if i == len(columns) - 1:
                    cells.append(piece)
                elif i in self.right:
                    cells.append(" " * (self.widths[i] - display_width(piece)) + piece)
                else:
                    cells.append(_pad(piece, self.widths[i]))
            lines.append("  ".join(cells).rstrip())
        return lines

    def render(self, rows: Iterable[Sequence[str]]) -> list[str]:
        rows = list(rows)
        self.fit(rows)
        return [self.header()] + [text for row in rows for text in self.line(row)]


# -- show --------------------------------------------------------------------

SHOW_HEADERS = ("TIME", "USER", "ACTION", "TYPE", "OUTCOME", "API", "CALL SITE", "RESOURCE")
_SHOW_LIMITS = (24, 40, 8, 6, 40, 40, 80, 0)
# --follow starts before the widest values are known: room for typical ones from the start.
_FOLLOW_MINIMUM = (24, 16, 6, 5, 28, 24, 40, 0)


def show_row(record: Record) -> list[str]:
    return [visible(cell) for cell in (
        format_time(record.time_ns, 3) if record.time_ns else "?",
        record.principal, record.action or "?", record.resource_type or "?", record.outcome_detail,
        record.api or "?", record.call_site, record.resource or "?",
    )]


def show_table(follow: bool = False) -> Table:
    table = Table(SHOW_HEADERS, _SHOW_LIMITS)
    if follow:
        table.widths = [max(w, m) for w, m in zip(table.widths, _FOLLOW_MINIMUM)]
    return table


# -- aggregation ---------------------------------------------------------------

@dataclass
class Tally:
    """Counts, first and last seen of a group of accesses."""

    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    outcomes: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)

    def add(self, record: Record) -> None:
        self.first_ns = record.time_ns if not self.count else min(self.first_ns, record.time_ns)
        self.last_ns = record.time_ns if not self.count else max(self.last_ns, record.time_ns)
        self.count += 1
        self.outcomes[record.outcome or "?"] += 1
        self.actions[record.action or "?"] += 1

    @property
    def problems(self) -> int:
        return self.count - self.outcomes[schema.OUTCOME_SUCCESS]

    def rank(self) -> tuple:
        """Sort key: most denials, then most failures, first."""
        return (-self.outcomes[schema.OUTCOME_DENIED], -(self.problems - self.outcomes[schema.OUTCOME_DENIED]))

    def as_json(self) -> dict:
        return {
            "count": self.count,
            "outcomes": {name: self.outcomes[name] for name in _ordered_outcomes(self.outcomes)},
            "actions": {name: self.actions[name] for name in _ordered_actions(self.actions)},
            "first_seen": format_time(self.first_ns),
            "last_seen": format_time(self.last_ns),
        }


def _ordered_outcomes(counter: Counter) -> list[str]:
    return sorted(counter, key=lambda name: (OUTCOME_RANK.get(name, 2), name))


def _ordered_actions(counter: Counter) -> list[str]:
    order = {name: i for i, name in enumerate(schema.ACTIONS)}
    return sorted(counter, key=lambda name: (order.get(name, len(order)), name))


Principal = tuple  # (user.name, enduser.id or None)


def principal_text(principal: Principal) -> str:
    user, enduser = principal
    return schema.principal_text(user if user is not None else "?", enduser)


@dataclass
class ProblemGroup:
    """Failures or denials of one principal doing one action on one resource, with one error type."""

    resource: str
    resource_type: str
    principal: Principal
    action: str
    outcome: str
    error_type: str | None
    tally: Tally = field(default_factory=Tally)
    apis: set = field(default_factory=set)
    call_sites: set = field(default_factory=set)


@dataclass
class ResourceSummary:
    uri: str
    resource_type: str
    tally: Tally = field(default_factory=Tally)
    principals: dict = field(default_factory=dict)  # Principal -> Tally


@dataclass
class PrincipalSummary:
    principal: Principal
    tally: Tally = field(default_factory=Tally)
    resources: dict = field(default_factory=dict)  # uri -> Tally


@dataclass
class Report:
    records: list[Record]  # oldest first, duplicates left out
    duplicates: int
    files: list[dict]  # {"file", "records", "skipped_non_audit"}
    errors: list[TrailError]
    filters: RecordFilter
    tally: Tally
    problems: list[ProblemGroup]
    resources: list[ResourceSummary]
    principals: list[PrincipalSummary]
    flat: list[tuple[tuple, Tally]]  # ((resource, type, user, enduser, action, outcome, error_type), tally)


def aggregate(records: Iterable[Record], *, files: list[dict], errors: list[TrailError],
              filters: RecordFilter) -> Report:
    """Who accessed what, from ``records`` (already filtered)."""
    seen_ids: set[str] = set()
    kept: list[Record] = []
    duplicates = 0
    for record in sorted(records, key=lambda r: r.time_ns):
        if record.record_id is not None:
            if record.record_id in seen_ids:
                duplicates += 1
                continue
            seen_ids.add(record.record_id)
        kept.append(record)

    tally = Tally()
    problems: dict[tuple, ProblemGroup] = {}
    resources: dict[str, ResourceSummary] = {}
    principals: dict[Principal, PrincipalSummary] = {}
    flat: dict[tuple, Tally] = {}
    for record in kept:
        uri, kind = record.resource or "?", record.resource_type or "?"
        who: Principal = (record.user, record.enduser)
        tally.add(record)
        resource = resources.setdefault(uri, ResourceSummary(uri, kind))
        resource.tally.add(record)
        resource.principals.setdefault(who, Tally()).add(record)
        principal = principals.setdefault(who, PrincipalSummary(who))
        principal.tally.add(record)
        principal.resources.setdefault(uri, Tally()).add(record)
        key = (uri, kind, record.user, record.enduser, record.action or "?", record.outcome or "?", record.error_type)
        flat.setdefault(key, Tally()).add(record)
        if record.is_problem:
            group = problems.get(key)
            if group is None:
                group = problems[key] = ProblemGroup(uri, kind, who, key[4], key[5], record.error_type)
            group.tally.add(record)
            group.apis.add(record.api or "?")
            group.call_sites.add(record.call_site)

    def who_key(p: Principal) -> tuple:
        return (p[0] or "", p[1] or "")

    ordered_problems = sorted(problems.values(), key=lambda g: (
        OUTCOME_RANK.get(g.outcome, 2), -g.tally.count, g.resource, who_key(g.principal), g.action))
    ordered_resources = sorted(resources.values(), key=lambda r: (r.tally.rank(), r.uri))
    for resource in ordered_resources:
        resource.principals = dict(sorted(resource.principals.items(), key=lambda kv: (kv[1].rank(), who_key(kv[0]))))
    ordered_principals = sorted(principals.values(), key=lambda p: (p.tally.rank(), who_key(p.principal)))
    for principal in ordered_principals:
        principal.resources = dict(sorted(principal.resources.items(), key=lambda kv: (kv[1].rank(), kv[0])))
    ordered_flat = sorted(flat.items(), key=lambda kv: (
        OUTCOME_RANK.get(kv[0][5], 2), kv[0][0], kv[0][2] or "", kv[0][3] or "", kv[0][4], kv[0][6] or ""))
    return Report(kept, duplicates, files, errors, filters, tally, ordered_problems, ordered_resources,
                  ordered_principals, ordered_flat)


def _counts(counter: Counter, order) -> str:
    return ", ".join(f"{name} {counter[name]}" for name in order(counter))


def _accesses(count: int) -> str:
    return f"{count} access" if count == 1 else f"{count} accesses"


def _period(tally: Tally) -> str:
    if not tally.count:
        return "no records"
    return f"{format_time(tally.first_ns, 3)} .. {format_time(tally.last_ns, 3)} (UTC)"


def _filters_text(filters: RecordFilter) -> str:
    parts = [f"--{name} {' --{0} '.format(name).join(values) if isinstance(values, list) else values}"
             for name, values in filters.describe().items() if values]
    return " ".join(parts) if parts else "none"


# -- text ----------------------------------------------------------------------

def render_text(report: Report) -> str:
    t = report.tally
    out = ["otel-audit report"]
    out.append(f"  input:      {len(report.files)} file(s), {t.count} audit records"
               + (f" ({report.duplicates} duplicate deliveries counted once)" if report.duplicates else ""))
    out.append(f"  period:     {_period(t)}")
    out.append(f"  outcomes:   {_counts(t.outcomes, _ordered_outcomes) or 'none'}")
    out.append(f"  resources:  {len(report.resources)}   principals: {len(report.principals)}")
    out.append(f"  filters:    {visible(_filters_text(report.filters))}")
    if report.errors:
        out.append(f"  INPUT PROBLEMS: {len(report.errors)} (listed at the end; what could be read is included)")

    out += ["", f"FAILURES AND DENIALS ({sum(g.tally.count for g in report.problems)})"]
    if report.problems:
        out += Table(("OUTCOME", "COUNT", "FIRST SEEN", "LAST SEEN", "PRINCIPAL", "ACTION", "API", "RESOURCE"),
                     (40, 8, 24, 24, 40, 8, 40, 0), right=(1,)).render(
            [visible(v) for v in (schema.outcome_text(g.outcome, g.error_type), g.tally.count,
                                  format_time(g.tally.first_ns, 3), format_time(g.tally.last_ns, 3),
                                  principal_text(g.principal), g.action, ", ".join(sorted(g.apis)), g.resource)]
            for g in report.problems)
    else:
        out.append("none")

    def nested(title: str, groups: list[tuple[str, Tally, dict]], label: str, name_of) -> list[str]:
        # the name (a resource or a principal) comes last: shown whole, never breaking the alignment
        table = Table(("  ACCESSES", "OUTCOMES", "ACTIONS", "FIRST SEEN", "LAST SEEN", label),
                      (10, 40, 40, 24, 24, 0), right=(0,))
        rows = {id(inner): [[str(tally.count), _counts(tally.outcomes, _ordered_outcomes),
                             _counts(tally.actions, _ordered_actions), format_time(tally.first_ns, 3),
                             format_time(tally.last_ns, 3), visible(name_of(key))] for key, tally in inner.items()]
                for _, _, inner in groups}
        table.fit(row for block in rows.values() for row in block)
        lines = ["", f"{title} ({len(groups)}, failures and denials first)"]
        for heading, tally, inner in groups:
            lines.append("")
            lines.append(f"{visible(heading)}  —  {_accesses(tally.count)} ({_counts(tally.outcomes, _ordered_outcomes)}), "
                         f"{format_time(tally.first_ns, 3)} .. {format_time(tally.last_ns, 3)}")
            lines.append(table.header())
            for row in rows[id(inner)]:
                lines += table.line(row)
        return lines

    out += nested("RESOURCES", [(f"{r.uri} [{r.resource_type}]", r.tally, r.principals) for r in report.resources],
                  "PRINCIPAL", principal_text)
    out += nested("PRINCIPALS", [(principal_text(p.principal), p.tally, p.resources) for p in report.principals],
                  "RESOURCE", str)
    if report.errors:
        out += ["", f"INPUT PROBLEMS ({len(report.errors)})"] + [visible(e) for e in report.errors]
    return "\n".join(out) + "\n"


# -- json ------------------------------------------------------------------------

def _principal_json(principal: Principal) -> dict:
    return {"user": principal[0], "enduser": principal[1]}


def render_json(report: Report) -> str:
    """The report as JSON, structure version :data:`REPORT_FORMAT_VERSION` (documented in the README).

    Times are UTC ISO 8601 strings with microseconds; ``enduser`` is ``null`` when
    the access was not made for an application end user.
    """
    t = report.tally
    document = {
        "format": "otel-audit-report",
        "version": REPORT_FORMAT_VERSION,
        "inputs": report.files,
        "input_errors": [{"file": e.path, "line": e.line or None, "message": e.message} for e in report.errors],
        "filters": report.filters.describe(),
        "summary": {
            "records": t.count,
            "duplicates_ignored": report.duplicates,
            "resources": len(report.resources),
            "principals": len(report.principals),
            "outcomes": {name: t.outcomes[name] for name in schema.OUTCOMES} | {
                name: t.outcomes[name] for name in t.outcomes if name not in schema.OUTCOMES},
            "first_seen": format_time(t.first_ns) if t.count else None,
            "last_seen": format_time(t.last_ns) if t.count else None,
        },
        "failures_and_denials": [
            {"resource": g.resource, "resource_type": g.resource_type, **_principal_json(g.principal),
             "action": g.action, "outcome": g.outcome, "error_type": g.error_type,
             "apis": sorted(g.apis), "call_sites": sorted(g.call_sites),
             "count": g.tally.count, "first_seen": format_time(g.tally.first_ns),
             "last_seen": format_time(g.tally.last_ns)}
            for g in report.problems
        ],
        "resources": [
            {"resource": r.uri, "resource_type": r.resource_type, **r.tally.as_json(),
             "principals": [{**_principal_json(p), **tally.as_json()} for p, tally in r.principals.items()]}
            for r in report.resources
        ],
        "principals": [
            {**_principal_json(p.principal), **p.tally.as_json(),
             "resources": [{"resource": uri, **tally.as_json()} for uri, tally in p.resources.items()]}
            for p in report.principals
        ],
    }
    return json.dumps(document, indent=2) + "\n"


# -- csv -------------------------------------------------------------------------

CSV_COLUMNS = ("resource", "resource_type", "user", "enduser", "action", "outcome", "error_type",
               "count", "first_seen", "last_seen")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before ``= + - @`` (and tab, CR)."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        text = "'" + text
    return visible(text)


def render_csv(report: Report) -> str:
    """One row per (resource, user, enduser, action, outcome, error type): failures and denials first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for (uri, kind, user, enduser, action, outcome, error_type), tally in report.flat:
        writer.writerow([spreadsheet_safe(v) for v in (uri, kind, user, enduser, action, outcome, error_type,
                                                       tally.count, format_time(tally.first_ns),
                                                       format_time(tally.last_ns))])
    return buffer.getvalue()


# -- html ------------------------------------------------------------------------

def _h(value: object) -> str:
    """Record text for HTML: non-printables made visible, then HTML-escaped (quotes too)."""
    return html.escape(visible(value), quote=True)


_PLOT_WIDTH = 860
_LABEL_WIDTH = 300
_LANE_HEIGHT = 24
_AXIS_HEIGHT = 34
_MARK_GAP = 13  # plot units between two marks' centres (a mark is 11-12 wide): closer ones never overlap
_LABEL_CHARS = 38
_COUNT_WIDTH = 72  # the accesses count at the right of each lane (its caption clear of the last tick)
_TICK_STEPS_NS = [n * 1_000_000 for n in (1, 2, 5, 10, 20, 50, 100, 200, 500)] + [
    n * 1_000_000_000 for n in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                                21600, 43200, 86400, 172800, 604800, 2592000, 7776000, 31536000)]


def _elide(text: str, limit: int = _LABEL_CHARS) -> str:
    """A lane label of at most ``limit`` characters (the full text is in the lane's hover title and the
    tables).  A path or URI keeps its file name whole and loses directories first, from the top, keeping
    its scheme and bucket or host while they fit: ``file:///…/quickstart-data/holdout.csv``,
    ``s3://lake/…/part-0.parquet``.  Only a file name too long by itself is cut in its middle."""
    if len(text) <= limit:
        return text
    scheme, sep, path = text.partition("://")
    if not sep:
        scheme, path = "", text
    head = f"{scheme}://" if sep else ""
    first, *middle, name = path.split("/") if "/" in path else ("", path)
    if "/" in path and len(name) + 2 <= limit:
        for start in (f"{head}{first}/", head, ""):  # with the bucket/host (or the root), then without
            kept = name
            for directory in reversed(middle):
                if len(start) + len(directory) + len(kept) + 3 > limit:
                    break
                kept = f"{directory}/{kept}"
            if len(start) + len(kept) + 2 <= limit:
                return f"{start}…/{kept}"
    return text[: limit // 3] + "…" + text[-(limit - limit // 3 - 1):]


def _ticks(first_ns: int, last_ns: int) -> list[int]:
    span = max(last_ns - first_ns, 1)
    step = next((s for s in _TICK_STEPS_NS if span / s <= 8), _TICK_STEPS_NS[-1])
    start = -(-first_ns // step) * step
    return list(range(start, last_ns + 1, step))


def _tick_label(time_ns: int, span_ns: int) -> str:
    text = format_time(time_ns, 3)  # 2024-05-01T09:30:00.123Z
    if span_ns < 2_000_000_000:
        return text[11:23]
    if span_ns < 86_400_000_000_000:
        return text[11:19]
    return text[:16].replace("T", " ")


_MARK_SHAPES = {
    schema.ACTION_READ: '<circle class="{cls}" cx="{x:.1f}" cy="{y}" r="5.5"',
    schema.ACTION_WRITE: '<rect class="{cls}" x="{x0:.1f}" y="{y0}" width="10" height="10" rx="1.5"',
    schema.ACTION_DELETE: '<path class="{cls}" d="M{x:.1f} {y0} l6 6 l-6 6 l-6 -6 z"',
    schema.ACTION_LIST: '<path class="{cls}" d="M{x:.1f} {y0} l6 11 l-12 0 z"',
}


def _lay_out_marks(records: list[Record], x_of, end: float) -> list[tuple[float, list[Record]]]:
    """One lane's marks: ``(x, accesses)`` in time order.  Accesses of the same action and outcome closer
    than a mark's width are one mark with their count; marks that would still overlap (another action or
    outcome an instant later) are moved apart, later ones to the right, so every mark can be seen and
    hovered, and the counts of a lane's marks add up to its accesses.  None is moved past ``end``: a
    burst at the end of the period is moved apart leftwards instead."""
    groups: list[tuple[float, list[Record]]] = []
    open_groups: dict[tuple, int] = {}  # (action, outcome) -> index of its latest group
    for record in sorted(records, key=lambda r: r.time_ns):
        x = x_of(record.time_ns)
        key = (record.action, record.outcome)
        index = open_groups.get(key)
        if index is not None and x - groups[index][0] < _MARK_GAP:
            groups[index][1].append(record)
            continue
        open_groups[key] = len(groups)
        groups.append((x, [record]))
    placed: list[tuple[float, list[Record]]] = []
    for x, group in sorted(groups, key=lambda g: g[0]):
        if placed and x - placed[-1][0] < _MARK_GAP:
            x = placed[-1][0] + _MARK_GAP
        placed.append((x, group))
    limit = end
    for index in range(len(placed) - 1, -1, -1):
        x, group = placed[index]
        if x > limit:
            placed[index] = (limit, group)
        limit = placed[index][0] - _MARK_GAP
    return placed


def _timeline(report: Report, lanes: list[tuple[str, str, list[Record]]], lane_kind: str) -> str:
    """An SVG swimlane chart: one lane per resource (or principal), a mark per access (or per
    accesses too close to tell apart, with their count), shape by action, colour by outcome."""
    t = report.tally
    span = max(t.last_ns - t.first_ns, 1)
    height = _AXIS_HEIGHT + len(lanes) * _LANE_HEIGHT + 8
    width = _LABEL_WIDTH + _PLOT_WIDTH + 12 + _COUNT_WIDTH

    def x_of(time_ns: int) -> float:
        if t.last_ns == t.first_ns:
            return _LABEL_WIDTH + _PLOT_WIDTH / 2
        return _LABEL_WIDTH + (time_ns - t.first_ns) / span * _PLOT_WIDTH

    parts = [f'<svg class="timeline" data-lanes="{lane_kind}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f'<title>Accesses over time, one lane per {lane_kind}</title>']
    # The date sits at the far left, clear of the first tick's label (centred on the plot's edge).
    parts.append(f'<text class="axis-caption" x="12" y="{_AXIS_HEIGHT - 12}" text-anchor="start">'
                 f'{_h(format_time(t.first_ns, 0)[:10])} UTC</text>'
                 f'<text class="axis-caption" x="{width - 6}" y="{_AXIS_HEIGHT - 12}" text-anchor="end">accesses</text>')
    for tick in _ticks(t.first_ns, t.last_ns) if t.count else []:
        x = x_of(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_AXIS_HEIGHT - 6}" y2="{height - 8}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{_AXIS_HEIGHT - 12}" text-anchor="middle">'
                     f'{_h(_tick_label(tick, span))}</text>')
    for index, (label, full, records) in enumerate(lanes):
        top = _AXIS_HEIGHT + index * _LANE_HEIGHT
        y = top + _LANE_HEIGHT // 2
        outcomes = {r.outcome for r in records}
        lane_class = ("lane denied-lane" if schema.OUTCOME_DENIED in outcomes
                      else "lane failure-lane" if outcomes - {schema.OUTCOME_SUCCESS} else "lane")
        parts.append(f'<g class="{lane_class}" data-lane="{_h(full)}">'
                     f'<rect class="lane-bg" x="0" y="{top}" width="{width}" height="{_LANE_HEIGHT}"/>'
                     f'<text class="lane-label" x="{_LABEL_WIDTH - 12}" y="{y + 4}" text-anchor="end">'
                     f'<title>{_h(full)}</title>{_h(label)}</text>'
                     f'<line class="lane-line" x1="{_LABEL_WIDTH}" x2="{_LABEL_WIDTH + _PLOT_WIDTH}" y1="{y}" y2="{y}"/>'
                     f'<text class="lane-count" x="{width - 6}" y="{y + 4}" text-anchor="end">{len(records)}</text>')
        for x, group in _lay_out_marks(records, x_of, _LABEL_WIDTH + _PLOT_WIDTH):
            first, action, outcome = group[0], group[0].action, group[0].outcome
            outcome_class = outcome if outcome in schema.OUTCOMES else "unknown"
            cls = f"mark outcome-{outcome_class}"
            shape = _MARK_SHAPES.get(action, _MARK_SHAPES[schema.ACTION_READ])
            if len(group) == 1:
                lines = [format_time(first.time_ns, 3), f"{first.principal} {first.action} {first.resource}",
                         f"via {first.api}: {first.outcome_detail}", f"at {first.call_site}"]
            else:
                kinds = Counter(r.outcome_detail for r in group)
                whos = sorted({r.principal for r in group})
                lines = [f"{len(group)} accesses, {format_time(group[0].time_ns, 3)} .. {format_time(group[-1].time_ns, 3)}",
                         f"{', '.join(whos)} {action} {first.resource}",
                         ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))]
            # each line escaped on its own: the line breaks are the tooltip's, not text to show as \x0a
            detail = "\n".join(_h(line) for line in lines)
            parts.append(shape.format(cls=cls, x=x, y=y, x0=x - 5, y0=y - 6 if action != schema.ACTION_WRITE else y - 5)
                         + f' data-x="{x:.1f}" data-count="{len(group)}" data-outcome="{_h(outcome_class)}">'
                         f'<title>{detail}</title></{shape.split()[0][1:]}>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


# How a column's cells wrap: times never, paths anywhere (they have no spaces), the rest at spaces.
_COLUMN_KINDS = {"Seen (UTC)": "time", "Resource": "path", "Call site": "path",
                 "Principal": "path", "Error": "word", "API": "word", "Outcome": "word", "Action": "word"}


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z")


def _nobr_times(text: str) -> str:
    """HTML of ``text`` whose timestamps never break at their hyphens (the header wraps between words)."""
    out, position = [], 0
    for match in _TIMESTAMP.finditer(text):
        out += [_h(text[position:match.start()]), f'<span class="nobr">{_h(match.group())}</span>']
        position = match.end()
    return "".join(out + [_h(text[position:])])


def _cell_html(kind: str, text: str) -> str:
    if kind == "time":  # first and last seen, one per line
        return "<br>".join(_h(part) for part in text.split("\n"))
    if kind == "word":  # a narrow window may break an API name after its dots, never inside a word
        return "<wbr>".join(_h(part) for part in re.split(r"(?<=\.)", text))
    return _h(text)


def _html_table(caption: str, headers: Sequence[str], rows: list[tuple[str, Sequence[object]]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    kinds = [_COLUMN_KINDS.get(h, "") for h in headers]
    body = "".join(
        f'<tr class="{row_class}">' + "".join(
            f'<td class="num">{cell}</td>' if isinstance(cell, int) else f'<td class="{kind}">{_cell_html(kind, cell)}</td>'
            for kind, cell in zip(kinds, cells))
        + "</tr>"
        for row_class, cells in rows)
    return (f'<section class="card"><h2>{html.escape(caption)}</h2>'
            f'<table id="{table_id}" class="filterable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'</section>')


def _seen(tally: Tally) -> str:
    """First and last seen, one per line (one line when they are the same instant)."""
    first, last = (format_time(n, 3).replace("T", " ").rstrip("Z") for n in (tally.first_ns, tally.last_ns))
    return first if first == last else f"{first}\n{last}"


def _row_class(tally: Tally) -> str:
    if tally.outcomes[schema.OUTCOME_DENIED]:
        return "row-denied"
    return "row-failure" if tally.problems else "row-success"


@functools.cache
def _asset(name: str) -> str:
    """A file of the HTML page, shipped as package data (``otel_audit/assets``): its style, and its script,
    which only reads the page it is in (no record data is ever put inside it)."""
    return (resources.files("otel_audit") / "assets" / name).read_text(encoding="utf-8")


def render_html(report: Report, generated_ns: int) -> str:
    """One self-contained page: summary, a timeline, then the tables, failures and denials first."""
    t = report.tally
    css, js = _asset("report.css"), _asset("report.js")
    script_hash = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"

    by_resource: dict[str, list[Record]] = {}
    by_principal: dict[str, list[Record]] = {}
    for record in report.records:
        by_resource.setdefault(record.resource or "?", []).append(record)
        by_principal.setdefault(record.principal, []).append(record)
    resource_lanes = [(_elide(r.uri), f"{r.uri} [{r.resource_type}]: {r.tally.count} accesses", by_resource[r.uri])
                      for r in report.resources]
    principal_lanes = [(_elide(principal_text(p.principal)),
                        f"{principal_text(p.principal)}: {p.tally.count} accesses", by_principal[principal_text(p.principal)])
                       for p in report.principals]

    def stat(label: str, value: int, kind: str = "") -> str:
        return f'<div class="stat {kind}{" zero" if kind and not value else ""}" data-stat="{label}"><b>{value}</b><span>{label}</span></div>'

    denied, failed = t.outcomes[schema.OUTCOME_DENIED], t.outcomes[schema.OUTCOME_FAILURE]
    other = t.count - denied - failed - t.outcomes[schema.OUTCOME_SUCCESS]
    files = ", ".join(f"{_h(f['file'])} ({f['records']} records)" for f in report.files)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>otel-audit report</title>",
        f"<style>{css}</style></head><body>",
        "<header><h1>Audit report: who accessed what</h1>",
        f'<div class="meta">{_nobr_times(_period(t))} · from {files} · filters: {_h(_filters_text(report.filters))}'
        f' · generated {_nobr_times(format_time(generated_ns, 0))}</div></header><main>',
        '<div class="cards">',
        stat("accesses", t.count), stat("denied", denied, "deny"), stat("failed", failed, "fail"),
        stat("succeeded", t.outcomes[schema.OUTCOME_SUCCESS], "ok"),
        stat("resources", len(report.resources)), stat("principals", len(report.principals)),
        *([stat("unknown outcome", other, "fail")] if other else []),
        *([stat("duplicates ignored", report.duplicates)] if report.duplicates else []),
        "</div>",
    ]
    if report.errors:
        out.append(f'<div class="alert" id="input-problems-alert"><b>{len(report.errors)} input problem(s)</b>: '
                   "some lines of the trail could not be read; everything readable is included. "
                   'See "Input problems" at the end.</div>')
    out.append('<section class="card"><h2>Timeline</h2><div class="controls">'
               '<span>Lanes: <button type="button" data-lanes="resource" class="active">by resource</button> '
               '<button type="button" data-lanes="principal">by principal</button></span>')
    for outcome, label in ((schema.OUTCOME_DENIED, "denied"), (schema.OUTCOME_FAILURE, "failed"),
                           (schema.OUTCOME_SUCCESS, "succeeded")):
        out.append(f'<label><input type="checkbox" checked data-outcome-toggle="{outcome}">'
                   f'<span class="swatch outcome-{outcome}" style="background:var(--{ {"denied": "deny", "failure": "fail", "success": "ok"}[outcome]})"></span>{label}</label>')
    out.append('<span>● read ■ write ◆ delete ▲ list · hover a mark for details · times in UTC</span></div>')
    if t.count:
        out.append('<div class="timeline-frame">')  # a narrow window scrolls the chart, never shrinks its text
        out.append(_timeline(report, resource_lanes, "resource"))
        out.append(_timeline(report, principal_lanes, "principal").replace('<svg class="timeline"', '<svg class="timeline hidden"', 1))
        out.append("</div>")
    else:
        out.append("<p>No records.</p>")
    out.append("</section>")
    out.append('<div class="controls"><input type="search" id="search" placeholder="Filter the tables" '
               'aria-label="Filter the tables: any text of a row (resource, user, error…)"></div>')

    out.append(_html_table(
        f"Failures and denials ({sum(g.tally.count for g in report.problems)})",
        ("Outcome", "Error", "Count", "Resource", "Principal", "Action", "API", "Call site", "Seen (UTC)"),
        [("row-denied" if g.outcome == schema.OUTCOME_DENIED else "row-failure",
          (g.outcome, g.error_type or ABSENT, g.tally.count, g.resource, principal_text(g.principal), g.action,
           ", ".join(sorted(g.apis)), ", ".join(sorted(g.call_sites)), _seen(g.tally)))
         for g in report.problems], "problems"))

    def outcome_cells(tally: Tally) -> tuple:
        return (tally.outcomes[schema.OUTCOME_DENIED], tally.outcomes[schema.OUTCOME_FAILURE],
                tally.outcomes[schema.OUTCOME_SUCCESS])

    resource_rows = []
    for r in report.resources:
        resource_rows.append((f"group {_row_class(r.tally)}", (r.uri, r.resource_type, "(all)", r.tally.count,
                                                               *outcome_cells(r.tally), _counts(r.tally.actions, _ordered_actions),
                                                               _seen(r.tally))))
        for who, tally in r.principals.items():
            resource_rows.append((_row_class(tally), ("", "", principal_text(who), tally.count, *outcome_cells(tally),
                                                      _counts(tally.actions, _ordered_actions), _seen(tally))))
    out.append(_html_table(f"Resources ({len(report.resources)})",
                           ("Resource", "Type", "Principal", "Accesses", "Denied", "Failed", "Succeeded", "Actions",
                            "Seen (UTC)"), resource_rows, "resources"))
    principal_rows = []
    for p in report.principals:
        principal_rows.append((f"group {_row_class(p.tally)}", (principal_text(p.principal), "(all)", p.tally.count,
                                                                *outcome_cells(p.tally), _counts(p.tally.actions, _ordered_actions),
                                                                _seen(p.tally))))
        for uri, tally in p.resources.items():
            principal_rows.append((_row_class(tally), ("", uri, tally.count, *outcome_cells(tally),
                                                       _counts(tally.actions, _ordered_actions), _seen(tally))))
    out.append(_html_table(f"Principals ({len(report.principals)})",
                           ("Principal", "Resource", "Accesses", "Denied", "Failed", "Succeeded", "Actions",
                            "Seen (UTC)"), principal_rows, "principals"))
    if report.errors:
        out.append(f'<section class="card" id="input-problems"><h2>Input problems ({len(report.errors)})</h2><ul class="errors">'
                   + "".join(f"<li>{_h(e)}</li>" for e in report.errors) + "</ul></section>")
    out.append(f"</main><script>{js}</script></body></html>")
    return "\n".join(out) + "\n"
