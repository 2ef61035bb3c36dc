"""The `otel-audit show` and `otel-audit report` commands, run as a user runs them, on trails written
by real instrumented runs and on hand-made (malformed, hostile, timed) trail files."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import instrumented_env, records_from_jsonl, run_instrumented
from otel_audit import schema

ESC = "\x1b"
HOSTILE_S3 = "s3://bucket/<img src=x onerror=alert(1)>.csv"
HOSTILE_ENDUSER = "<script>alert(2)</script>"

# Each access a second apart in wall time is not needed: 40 ms apart keeps every mark of the
# HTML timeline distinct (the chart merges accesses closer than 3/860 of the whole period).
SCRIPT = f"""
import os, time
import otel_audit

def pause():
    time.sleep(0.04)

os.makedirs("data", exist_ok=True)
with open("data/customers.csv", "w") as f:
    f.write("id\\n1\\n")
pause()
with otel_audit.enduser("alice"):
    open("data/customers.csv").read()
pause()
with otel_audit.enduser("bob"):
    try:
        open("data/holdout.csv")
    except FileNotFoundError:
        pass
    pause()
    otel_audit.record_access("s3://models/churn.pt", "read", resource_type="model",
                             outcome="denied", error_type="AccessDenied")
pause()
with otel_audit.enduser({HOSTILE_ENDUSER!r}):
    otel_audit.record_access({HOSTILE_S3!r}, "read")
pause()
with otel_audit.enduser("eve\\x1b[2J"):
    open("data/report\\x1b[31m.txt", "w").close()
pause()
otel_audit.record_access("s3://bucket/raw/", "list")
pause()
with otel_audit.enduser("=cmd|' /C calc'!A0"):
    otel_audit.record_access("@SUM(1+1)", "delete", outcome="denied", error_type="-Forbidden")
"""


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_audit", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120, encoding="utf-8")


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> Path:
    """A trail written by a real run under opentelemetry-instrument: reads, writes, a failure, denials."""
    workdir = tmp_path_factory.mktemp("run")
    script = workdir / "accesses.py"
    script.write_text(SCRIPT)
    result = run_instrumented(script, cwd=workdir, env=instrumented_env(OTEL_LOGS_EXPORTER="audit_file"))
    assert result.returncode == 0, result.stderr
    path = workdir / "otel-audit.jsonl"
    assert len(records_from_jsonl(path)) == 8
    return path


def ms_time(time_ns: int) -> str:
    """What the table shows as the time, computed independently of the command."""
    moment = datetime.fromtimestamp(time_ns // 1_000_000_000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_ns // 1_000_000 % 1000:03d}Z"


def escaped(text: str) -> str:
    return text.replace(ESC, "\\x1b")


def expected_row(record: dict) -> list[str]:
    a = record["attributes"]
    user = a[schema.USER_NAME] + (f" (for {a[schema.ENDUSER_ID]})" if schema.ENDUSER_ID in a else "")
    outcome = a[schema.AUDIT_OUTCOME] + (f": {a[schema.ERROR_TYPE]}" if schema.ERROR_TYPE in a else "")
    return [escaped(v) for v in (
        ms_time(record["time_unix_nano"]), user, a[schema.AUDIT_ACTION], a[schema.AUDIT_RESOURCE_TYPE], outcome,
        a[schema.AUDIT_API], f"{a[schema.CODE_FILE_PATH]}:{a[schema.CODE_LINE_NUMBER]}", a[schema.AUDIT_RESOURCE_URI])]


HEADERS = ["TIME", "USER", "ACTION", "TYPE", "OUTCOME", "API", "CALL SITE", "RESOURCE"]


def parse_table(stdout: str) -> list[list[str]]:
    """Cut each line at the header's column starts, and check every row is aligned on them.
    No output at all is no rows: show prints its header only above something to show."""
    if stdout == "":
        return []
    lines = stdout.splitlines()
    header = lines[0]
    starts = [header.index(name) for name in HEADERS]
    rows = []
    for line in lines:
        for start in starts[1:]:
            # aligned: a column starts right after two spaces of gutter, and not inside a value
            assert line[start - 2:start] == "  " and line[start] != " ", (line, start)
        cells = [line[a:b].rstrip() for a, b in zip(starts, starts[1:])] + [line[starts[-1]:]]
        rows.append(cells)
    assert rows[0] == HEADERS
    return rows[1:]


def by_outcome(records: list[dict], *outcomes: str) -> list[dict]:
    return [r for r in records if r["attributes"][schema.AUDIT_OUTCOME] in outcomes]


# -- hand-made trails -----------------------------------------------------------------

NOW_NS = time.time_ns()
T0 = 1_714_555_800_000_000_000  # 2024-05-01T09:30:00Z


def audit_attributes(*, user="svc", action="read", outcome="success", uri="s3://b/k", kind="data",
                     api="s3.GetObject", enduser=None, error=None, seq=1, record_id=None) -> dict:
    attributes = {
        schema.AUDIT_ACTION: action, schema.AUDIT_OUTCOME: outcome, schema.AUDIT_API: api,
        schema.AUDIT_RESOURCE_URI: uri, schema.AUDIT_RESOURCE_TYPE: kind, schema.AUDIT_SEQ: seq,
        schema.AUDIT_RECORD_ID: record_id or f"handmade-{seq}", schema.USER_NAME: user, schema.USER_ID: "1000",
        schema.PROCESS_PID: 42, schema.CODE_FILE_PATH: "/app/job.py", schema.CODE_LINE_NUMBER: seq,
        schema.CODE_FUNCTION_NAME: "main",
    }
    if enduser is not None:
        attributes[schema.ENDUSER_ID] = enduser
    if error is not None:
        attributes[schema.ERROR_TYPE] = error
    return attributes


def otlp_line(*records: tuple[int, dict], event_name: str = schema.EVENT_NAME) -> str:
    """One ExportLogsServiceRequest as OTLP/JSON, the way the sink and the collector write it."""
    def value(v):
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}
    logs = [{"timeUnixNano": str(time_ns), "observedTimeUnixNano": str(time_ns), "severityNumber": 9,
             "severityText": "INFO", "body": {"stringValue": "handmade"}, "eventName": event_name,
             "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()]}
            for time_ns, attrs in records]
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "handmade"}}]},
        "scopeLogs": [{"scope": {"name": "otel_audit" if event_name == schema.EVENT_NAME else "app"},
                       "logRecords": logs}]}]}) + "\n"


# -- show -------------------------------------------------------------------------------

def test_show_prints_every_record_as_an_aligned_row(trail):
    records = records_from_jsonl(trail)
    shown = cli("show", str(trail), cwd=trail.parent)
    assert shown.returncode == 0 and shown.stderr == ""
    rows = parse_table(shown.stdout)
    assert rows == [expected_row(r) for r in sorted(records, key=lambda r: r["time_unix_nano"])]
    assert ESC not in shown.stdout  # the escape sequence in the end user never reaches the terminal


def test_show_rows_field_by_field(trail):
    shown = cli("show", str(trail), cwd=trail.parent)
    rows = parse_table(shown.stdout)
    user = records_from_jsonl(trail)[0]["attributes"][schema.USER_NAME]
    data = (trail.parent / "data").as_uri()
    script = str(trail.parent / "accesses.py")
    assert [r[1:] for r in rows] == [
        [user, "write", "data", "success", "builtins.open", f"{script}:9", f"{data}/customers.csv"],
        [f"{user} (for alice)", "read", "data", "success", "builtins.open", f"{script}:13", f"{data}/customers.csv"],
        [f"{user} (for bob)", "read", "data", "failure: FileNotFoundError", "builtins.open", f"{script}:17",
         f"{data}/holdout.csv"],
        [f"{user} (for bob)", "read", "model", "denied: AccessDenied", "otel_audit.record_access", f"{script}:21",
         "s3://models/churn.pt"],
        [f"{user} (for {HOSTILE_ENDUSER})", "read", "data", "success", "otel_audit.record_access", f"{script}:25",
         HOSTILE_S3],
        [f"{user} (for eve\\x1b[2J)", "write", "data", "success", "builtins.open", f"{script}:28",
         f"{data}/report%1B%5B31m.txt"],
        [user, "list", "data", "success", "otel_audit.record_access", f"{script}:30", "s3://bucket/raw/"],
        [f"{user} (for =cmd|' /C calc'!A0)", "delete", "data", "denied: -Forbidden", "otel_audit.record_access",
         f"{script}:33", "@SUM(1+1)"],
    ]


# The records of SCRIPT by the line that made them.
WRITE, ALICE, HOLDOUT, CHURN, HOSTILE, EVE, LIST, FORMULA = 9, 13, 17, 21, 25, 28, 30, 33


@pytest.mark.parametrize("args, expected", [
    (["--user", "alice"], [ALICE]),
    (["--user", "bob"], [HOLDOUT, CHURN]),
    (["--user", "alice", "--user", "bob"], [ALICE, HOLDOUT, CHURN]),
    (["--user", "b*"], [HOLDOUT, CHURN]),
    (["--user", "root", "--action", "list"], [LIST]),
    (["--outcome", "denied"], [CHURN, FORMULA]),
    (["--outcome", "denied", "--outcome", "failure"], [HOLDOUT, CHURN, FORMULA]),
    (["--action", "write"], [WRITE, EVE]),
    (["--action", "list"], [LIST]),
    (["--resource", "customers.csv"], [WRITE, ALICE]),  # what people type: a file name, any directory
    (["--resource", "data/*.csv"], [WRITE, ALICE, HOLDOUT]),
    (["--resource", "data/"], [WRITE, ALICE, HOLDOUT, EVE]),
    (["--resource", "*.csv"], [WRITE, ALICE, HOLDOUT, HOSTILE]),
    (["--resource", "s3://*"], [CHURN, HOSTILE, LIST]),
    (["--resource", "s3://models/*", "--resource", "@*"], [CHURN, FORMULA]),
    (["--resource", "*report\x1b*"], [EVE]),  # the local path, as the OS has it
    (["--resource", "*holdout*", "--user", "alice"], []),
    (["--user", "nobody"], []),
])
def test_show_filters_select_exactly_the_matching_records(trail, args, expected):
    if args[:2] == ["--user", "root"]:
        args = ["--user", records_from_jsonl(trail)[0]["attributes"][schema.USER_NAME], *args[2:]]
    shown = cli("show", str(trail), *args, cwd=trail.parent)
    assert shown.returncode == 0 and shown.stderr == ""
    assert [int(row[6].rsplit(":", 1)[1]) for row in parse_table(shown.stdout)] == expected


def test_show_filters_by_absolute_path_and_time(tmp_path):
    trail = tmp_path / "t.jsonl"
    trail.write_text(otlp_line(
        (T0, audit_attributes(uri="file:///srv/my%20data/a.csv", action="read", seq=1)),
        (T0 + 60_000_000_000, audit_attributes(uri="file:///srv/other/b.csv", action="write", seq=2)),
        (T0 + 120_000_000_000, audit_attributes(uri="file:///srv/my%20data/c.csv", action="read", seq=3)),
    ).replace('"seq"', '"seq"'))
    # file.path is what a person types; the URI is percent-encoded
    def lines(*args):
        shown = cli("show", str(trail), *args, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        return [row[7] for row in parse_table(shown.stdout)]
    assert lines("--resource", "/srv/my data/*") == ["file:///srv/my%20data/a.csv", "file:///srv/my%20data/c.csv"]
    assert lines("--resource", "file:///srv/my%20data/a.csv") == ["file:///srv/my%20data/a.csv"]
    assert lines("--since", "2024-05-01T09:31:00Z") == ["file:///srv/other/b.csv", "file:///srv/my%20data/c.csv"]
    assert lines("--since", "2024-05-01T11:31:00+02:00") == ["file:///srv/other/b.csv", "file:///srv/my%20data/c.csv"]
    assert lines("--until", "2024-05-01T09:31:00") == ["file:///srv/my%20data/a.csv"]  # UTC, until is exclusive
    assert lines("--since", "2024-05-01T09:30:30", "--until", "2024-05-01T09:32") == ["file:///srv/other/b.csv"]
    assert lines("--since", "2024-05-02") == []


def test_show_relative_since(tmp_path):
    trail = tmp_path / "t.jsonl"
    hour, minute = 3600 * 10**9, 60 * 10**9
    now = time.time_ns()
    trail.write_text(otlp_line(
        (now - 3 * 24 * hour, audit_attributes(uri="s3://b/3d", seq=1)),
        (now - 3 * hour, audit_attributes(uri="s3://b/3h", seq=2)),
        (now - 10 * minute, audit_attributes(uri="s3://b/10m", seq=3)),
    ))
    def resources(*args):
        shown = cli("show", str(trail), *args, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        return [row[7] for row in parse_table(shown.stdout)]
    assert resources("--since", "15m") == ["s3://b/10m"]
    assert resources("--since", "4h") == ["s3://b/3h", "s3://b/10m"]
    assert resources("--since", "7d", "--until", "1h") == ["s3://b/3d", "s3://b/3h"]
    assert resources("--since", "1w") == ["s3://b/3d", "s3://b/3h", "s3://b/10m"]


def test_show_sorts_across_files_newest_last(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(otlp_line((T0 + 2, audit_attributes(uri="s3://b/2", seq=2))) +
                     otlp_line((T0 + 5_000_000, audit_attributes(uri="s3://b/4", seq=4))))
    second.write_text(otlp_line((T0 + 1, audit_attributes(uri="s3://b/1", seq=1)),
                                (T0 + 3_000_000, audit_attributes(uri="s3://b/3", seq=3))))
    shown = cli("show", str(first), str(second), cwd=tmp_path)
    assert [(row[0], row[7]) for row in parse_table(shown.stdout)] == [
        ("2024-05-01T09:30:00.000Z", "s3://b/1"), ("2024-05-01T09:30:00.000Z", "s3://b/2"),
        ("2024-05-01T09:30:00.003Z", "s3://b/3"), ("2024-05-01T09:30:00.005Z", "s3://b/4")]


def test_show_escapes_hostile_strings_and_keeps_columns_aligned(tmp_path):
    trail = tmp_path / "t.jsonl"
    long_key = "s3://bucket/" + "x" * 300 + ".csv"
    trail.write_text(otlp_line(
        (T0, audit_attributes(uri="s3://b/evil\x1b]0;pwned\x07\u202egnp.exe", user="mallory\x9b31m",
                              api="api\nFAKE ROW", error="E\r\x00", outcome="failure", seq=1)),
        (T0 + 1, audit_attributes(uri=long_key, user="u" * 70, seq=2)),
        (T0 + 2, audit_attributes(uri="s3://b/ok", api="大模型.load", seq=3)),
    ))
    shown = cli("show", str(trail), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", shown.stdout)
    lines = shown.stdout.splitlines()
    assert "mallory\\x9b31m" in lines[1]
    assert lines[1].endswith("s3://b/evil\\x1b]0;pwned\\x07\\u202egnp.exe")
    assert "api\\x0aFAKE ROW" in lines[1] and "failure: E\\x0d\\x00" in lines[1]
    # a 70-character user is wider than the USER column's limit (40): it continues on the next line,
    # in its column, and the resource stays whole on the row's first line
    header = lines[0]
    user_at, resource_at = header.index("USER"), header.index("RESOURCE")
    assert lines[2][user_at:user_at + 40] == "u" * 40 and lines[2][resource_at:] == long_key
    assert lines[3].strip() == "u" * 30 and lines[3].index("u") == user_at
    assert lines[4].endswith("s3://b/ok")
    # columns after the wide characters line up in terminal cells: 大模型 is 6 cells wide, 3 characters
    assert lines[4].index("/app/job.py") + 3 == lines[1].index("/app/job.py")
    assert len(lines) == 5
    # the report formats a terminal or a spreadsheet reads escape them too; JSON escapes as JSON does
    for fmt in ("text", "csv", "json"):
        reported = cli("report", str(trail), "--format", fmt, cwd=tmp_path)
        assert reported.returncode == 0, reported.stderr
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202e]", reported.stdout), fmt
        assert ("mallory\\u009b31m" if fmt == "json" else "mallory\\x9b31m") in reported.stdout


@pytest.mark.parametrize("line, message", [
    ('[1, 2]', "not an OTLP/JSON logs request: a list, where an object with resourceLogs is expected"),
    ('{"foo": 1, "bar": 2}', "not an OTLP/JSON logs request: an object with bar, foo, where an object with "
                             "resourceLogs is expected"),
    ('{"resourceLogs": [{"scopeLogs": "x"}]}', "resourceLogs[0].scopeLogs is a string, not a list"),
    ('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": "audit.access", "attributes": [{"value": {}}]}]}]}]}',
     "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[0] has no key"),
    ('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": "audit.access", "timeUnixNano": "soon"}]}]}]}',
     "resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano is a string, not a time in nanoseconds"),
    ('{"resourceLogs": [{"resource": {"attributes": [{"key": "k", "value": {"intValue": "x"}}]}}]}',
     "resourceLogs[0].resource.attributes[0].value.intValue is a string, not an integer"),
    ("[" * 100_000, "nested too deeply to be OTLP/JSON"),
])
def test_malformed_lines_are_described_in_otlp_terms(tmp_path, line, message):
    trail = tmp_path / "bad.jsonl"
    trail.write_text(line + "\n")
    shown = cli("show", str(trail), cwd=tmp_path)
    assert shown.returncode == 1 and shown.stdout == ""  # no header above nothing
    assert shown.stderr.splitlines()[0] == f"otel-audit: {trail}:1: {message}"


def test_a_binary_file_lists_twenty_problems_and_counts_the_rest(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"".join(bytes([0xff, n % 256, 0x0a]) for n in range(300)))  # 300 lines, none UTF-8
    shown = cli("show", str(binary), cwd=tmp_path)
    assert shown.returncode == 1 and shown.stdout == ""
    lines = shown.stderr.splitlines()
    assert len(lines) == 22
    assert all(line.startswith(f"otel-audit: {binary}:") and "not UTF-8 text" in line for line in lines[:20])
    assert lines[20:] == [f"otel-audit: {binary}: 280 more problems in this file, not listed (the first 20 are)",
                          "otel-audit: 300 input problem(s), see above; every record that could be read is shown"]


def test_show_of_a_missing_file_prints_no_header(tmp_path):
    shown = cli("show", str(tmp_path / "absent.jsonl"), cwd=tmp_path)
    assert (shown.returncode, shown.stdout) == (1, "")


def test_show_malformed_lines_are_named_and_never_hide_valid_ones(tmp_path):
    trail = tmp_path / "mixed.jsonl"
    good = otlp_line((T0, audit_attributes(uri="s3://b/good1", seq=1)))
    incomplete = dict(audit_attributes(uri="s3://b/incomplete", seq=3))
    del incomplete[schema.USER_NAME], incomplete[schema.AUDIT_OUTCOME]
    with open(trail, "wb") as stream:
        stream.write(b"{not json\n")                                                      # 1
        stream.write(good.encode())                                                       # 2
        stream.write(b'{"resourceLogs": 3}\n')                                            # 3
        stream.write(b"\n")                                                               # 4 (blank: ignored)
        stream.write(b'{"resourceLogs": []}\xff\n')                                       # 5
        stream.write(otlp_line((T0 + 1, incomplete)).encode())                            # 6
        stream.write(otlp_line((T0 + 2, {"log.message": "app log"}), event_name="").encode())  # 7
        stream.write(otlp_line((T0 + 3, audit_attributes(uri="s3://b/good2", seq=4)))[:-1].encode())  # 8, no newline
    missing = tmp_path / "absent.jsonl"
    shown = cli("show", str(missing), str(trail), str(tmp_path), cwd=tmp_path)
    assert shown.returncode == 1
    assert [(r[1], r[4], r[7]) for r in parse_table(shown.stdout)] == [
        ("svc", "success", "s3://b/good1"), ("?", "?", "s3://b/incomplete"), ("svc", "success", "s3://b/good2")]
    assert shown.stderr.splitlines() == [
        # (these hand-made lines carry no chain: said first, as for any trail that cannot be checked)
        "otel-audit: stream (no service.instance.id): 3 records with no audit.chain.hash: the trail cannot be checked",
        f"otel-audit: {missing}: cannot read: No such file or directory",
        f"otel-audit: {trail}:1: not JSON (Expecting property name enclosed in double quotes at character 2)",
        f"otel-audit: {trail}:3: resourceLogs is a number, not a list",
        f"otel-audit: {trail}:5: not UTF-8 text (invalid start byte at byte 20)",
        f"otel-audit: {trail}:6: audit record lacks audit.outcome, user.name (shown with '?')",
        f"otel-audit: {tmp_path}: cannot read: Is a directory",
        f"otel-audit: {trail}: 1 log records that are not audit.access events were left out",
        "otel-audit: 6 input problem(s), see above; every record that could be read is shown",
    ]


def test_show_reads_stdin(trail):
    shown = cli("show", "-", "--outcome", "failure", cwd=trail.parent, stdin=trail.read_text())
    assert shown.returncode == 0, shown.stderr
    assert [r[4] for r in parse_table(shown.stdout)] == ["failure: FileNotFoundError"]
    broken = cli("show", "-", cwd=trail.parent, stdin="garbage\n")
    assert broken.returncode == 1
    assert broken.stderr.splitlines()[0] == ("otel-audit: the trail's chain is not checked when it is read from "
                                             "standard input (otel-audit verify FILE...)")
    assert broken.stderr.splitlines()[1].startswith("otel-audit: <stdin>:1: not JSON (")


@pytest.mark.parametrize("args, message", [
    (["show", "t.jsonl", "--since", "yesterday"], "is neither an ISO 8601 time"),
    (["show", "t.jsonl", "--action", "open"], "invalid choice: 'open'"),
    (["report", "t.jsonl", "--format", "pdf"], "invalid choice: 'pdf'"),
    (["show", "--follow", "-"], "--follow reads files"),
    (["show"], "the following arguments are required: FILE"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


# -- follow -------------------------------------------------------------------------------

class Follower:
    """`otel-audit show --follow` in a subprocess, its stdout lines collected as they come."""

    def __init__(self, *args: str, cwd: Path):
        # Started as from a terminal, where Ctrl-C is SIGINT's default action.  A test run started
        # in the background (`.ci/run &`) hands its children SIGINT *ignored*, which Python (rightly)
        # keeps, and the follower would then never see the Ctrl-C this test sends.
        self.process = subprocess.Popen([sys.executable, "-m", "otel_audit", "show", "--follow", *args], cwd=cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self._pumps = [threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
                       for stream, lines in ((self.process.stdout, self.lines), (self.process.stderr, self.errors))]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream, lines: queue.Queue):
        for line in stream:
            lines.put(line.rstrip("\n"))

    def next_error(self, timeout: float = 30) -> str:
        """The next stderr line: what the follower reported (tests wait for it instead of sleeping)."""
        return self.errors.get(timeout=timeout)

    def next_lines(self, count: int, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            got.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
        return got

    def next_rows(self, count: int) -> list[str]:
        """The next ``count`` table rows (a wider layout starts with a new header line)."""
        rows = []
        while len(rows) < count:
            line = self.next_lines(1)[0]
            if not line.startswith("TIME "):
                rows.append(line)
        return rows

    def quiet(self, seconds: float = 1.5) -> bool:
        """No new line for ``seconds`` (several polls)."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected line: {line!r}")

    def stop(self, signum: int) -> tuple[int, str]:
        """Send ``signum``; the exit code and the stderr lines not taken by :meth:`next_error`."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        for pump in self._pumps:
            pump.join(timeout=10)
        left = []
        while not self.errors.empty():
            left.append(self.errors.get())
        return code, "\n".join(left)


def resource_of(line: str) -> str:
    return line.rsplit("  ", 1)[1]


def test_follow_prints_appended_records_across_partial_lines_truncation_and_rotation(tmp_path):
    trail = tmp_path / "otel-audit.jsonl"
    trail.write_text(otlp_line((T0, audit_attributes(uri="s3://b/before", seq=1))))
    follower = Follower(str(trail), "--outcome", "success", cwd=tmp_path)
    try:
        header, first = follower.next_lines(2)
        assert header.split() == ["TIME", "USER", "ACTION", "TYPE", "OUTCOME", "API", "CALL", "SITE", "RESOURCE"]
        assert resource_of(first) == "s3://b/before"

        # a line being written is not read until its newline arrives
        line = otlp_line((T0 + 1, audit_attributes(uri="s3://b/split", seq=2)))
        with open(trail, "a") as stream:
            stream.write(line[:40])
        assert follower.quiet()
        with open(trail, "a") as stream:
            stream.write(line[40:])
            # filtered out: not printed
            stream.write(otlp_line((T0 + 2, audit_attributes(uri="s3://b/denied", outcome="denied", seq=3))))
        assert resource_of(follower.next_rows(1)[0]) == "s3://b/split"

        # another instrumented process appends to the same file
        script = tmp_path / "writer.py"
        script.write_text("open('written-by-another-process.txt', 'w').close()\n")
        env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
        assert run_instrumented(script, cwd=tmp_path, env=env).returncode == 0
        assert resource_of(follower.next_rows(1)[0]) == (tmp_path / "written-by-another-process.txt").as_uri()

        # truncated and rewritten: read again from the start
        trail.write_text(otlp_line((T0 + 4, audit_attributes(uri="s3://b/after-truncation", seq=5))))
        assert resource_of(follower.next_rows(1)[0]) == "s3://b/after-truncation"

        # rotated: the old file moved away (and written to one last time), a new one created
        rotated = tmp_path / "otel-audit.jsonl.1"
        trail.rename(rotated)
        with open(rotated, "a") as stream:
            stream.write(otlp_line((T0 + 5, audit_attributes(uri="s3://b/last-in-old", seq=6))))
        time.sleep(1.2)
        trail.write_text(otlp_line((T0 + 6, audit_attributes(uri="s3://b/in-new", seq=7))))
        assert [resource_of(l) for l in follower.next_rows(2)] == ["s3://b/last-in-old", "s3://b/in-new"]
        assert follower.quiet()
    finally:
        code, stderr = follower.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert stderr.splitlines() == [
        "otel-audit: stream (no service.instance.id): 1 records with no audit.chain.hash: the trail cannot be checked",
        f"otel-audit: {trail}: truncated; reading it again from its start",
        f"otel-audit: {trail}: replaced (rotated); reading it again from its start",
    ]


def test_follow_waits_for_a_missing_file_and_exits_cleanly_on_ctrl_c(tmp_path):
    trail = tmp_path / "later.jsonl"
    follower = Follower(str(trail), cwd=tmp_path)
    try:
        # the file was missing at first and a line was malformed: each reported as it happens
        assert follower.next_error() == f"otel-audit: {trail}: cannot read: No such file or directory"
        assert follower.quiet(1.0)  # no header while there is nothing to show
        trail.write_text(otlp_line((T0, audit_attributes(uri="s3://b/appeared", seq=1))))
        assert follower.next_error() == f"otel-audit: {trail}: now readable, reading it"
        header, row = follower.next_lines(2)
        assert header.startswith("TIME ") and resource_of(row) == "s3://b/appeared"
        with open(trail, "a") as stream:
            stream.write("{broken\n")
        assert follower.next_error() == (
            f"otel-audit: {trail}:2: not JSON (Expecting property name enclosed in double quotes at character 2)")
    finally:
        code, stderr = follower.stop(signal.SIGINT)
    # exit 1 for the problems, no traceback
    assert code == 1
    assert stderr.splitlines() == [
        "otel-audit: 2 input problem(s), see above; every record that could be read is shown",
    ]


# -- report ------------------------------------------------------------------------------

def test_report_text_lists_failures_and_denials_first(trail):
    result = cli("report", str(trail), cwd=trail.parent)
    assert result.returncode == 0 and result.stderr == ""
    text = result.stdout
    assert ESC not in text
    user = records_from_jsonl(trail)[0]["attributes"][schema.USER_NAME]
    lines = text.splitlines()
    assert lines[:6] == [
        "otel-audit report",
        "  input:      1 file(s), 8 audit records",
        lines[2],
        "  outcomes:   denied 2, failure 1, success 5",
        "  resources:  7   principals: 6",
        "  filters:    none",
    ]
    problems = lines[lines.index("FAILURES AND DENIALS (3)") + 2:][:3]
    assert [l.split()[:2] for l in problems] == [["denied:", "-Forbidden"], ["denied:", "AccessDenied"],
                                                 ["failure:", "FileNotFoundError"]]
    resources = lines.index("RESOURCES (7, failures and denials first)")
    firsts = [l.split("  —  ")[0] for l in lines[resources:] if "  —  " in l][:3]
    assert firsts == ["@SUM(1+1) [data]", "s3://models/churn.pt [model]",
                      f"{(trail.parent / 'data').as_uri()}/holdout.csv [data]"]
    principals = lines.index("PRINCIPALS (6, failures and denials first)")
    assert lines[principals + 2].startswith(f"{user} (for bob)  —  2 accesses (denied 1, failure 1), ")
    assert lines[principals + 7].startswith(f"{user} (for =cmd|' /C calc'!A0)  —  1 access (denied 1), ")
    assert f"{user} (for eve\\x1b[2J)  —  1 access (success 1)" in text


def test_report_json_structure_and_counts(trail):
    result = cli("report", str(trail), "--format", "json", cwd=trail.parent)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    records = records_from_jsonl(trail)
    user = records[0]["attributes"][schema.USER_NAME]
    data = (trail.parent / "data").as_uri()
    assert document["format"] == "otel-audit-report" and document["version"] == 1
    assert document["inputs"] == [{"file": str(trail), "records": 8, "skipped_non_audit": 0}]
    assert document["input_errors"] == []
    times = sorted(r["time_unix_nano"] for r in records)
    assert document["summary"] == {
        "records": 8, "duplicates_ignored": 0, "resources": 7, "principals": 6,
        "outcomes": {"success": 5, "failure": 1, "denied": 2},
        "first_seen": datetime.fromtimestamp(times[0] // 1000 / 1e6, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "last_seen": datetime.fromtimestamp(times[-1] // 1000 / 1e6, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    assert [(p["outcome"], p["error_type"], p["resource"], p["enduser"], p["count"])
            for p in document["failures_and_denials"]] == [
        ("denied", "-Forbidden", "@SUM(1+1)", "=cmd|' /C calc'!A0", 1),
        ("denied", "AccessDenied", "s3://models/churn.pt", "bob", 1),
        ("failure", "FileNotFoundError", f"{data}/holdout.csv", "bob", 1),
    ]
    customers = next(r for r in document["resources"] if r["resource"] == f"{data}/customers.csv")
    assert customers["count"] == 2 and customers["outcomes"] == {"success": 2}
    assert customers["actions"] == {"read": 1, "write": 1}
    assert [(p["user"], p["enduser"], p["count"], p["actions"]) for p in customers["principals"]] == [
        (user, None, 1, {"write": 1}), (user, "alice", 1, {"read": 1})]
    assert [r["resource"] for r in document["resources"]][:3] == ["@SUM(1+1)", "s3://models/churn.pt",
                                                                  f"{data}/holdout.csv"]
    bob = next(p for p in document["principals"] if p["enduser"] == "bob")
    assert bob["count"] == 2 and bob["outcomes"] == {"denied": 1, "failure": 1}
    assert [r["resource"] for r in bob["resources"]] == ["s3://models/churn.pt", f"{data}/holdout.csv"]
    # the recorder wrote the end user's ESC as the text \x1b: the report keeps that exact text
    assert any(p["enduser"] == "eve\\x1b[2J" for p in document["principals"])


def test_report_counts_a_record_delivered_twice_once(tmp_path):
    line = otlp_line((T0, audit_attributes(uri="s3://b/k", seq=1, record_id="abc-1")),
                     (T0 + 1, audit_attributes(uri="s3://b/k", seq=2, record_id="abc-2")))
    (tmp_path / "local.jsonl").write_text(line)
    (tmp_path / "collector.jsonl").write_text(line)
    result = cli("report", "local.jsonl", "collector.jsonl", "--format", "json", cwd=tmp_path)
    summary = json.loads(result.stdout)["summary"]
    assert (summary["records"], summary["duplicates_ignored"]) == (2, 2)
    text = cli("report", "local.jsonl", "collector.jsonl", cwd=tmp_path).stdout
    assert "  input:      2 file(s), 2 audit records (2 duplicate deliveries counted once)" in text


def test_report_csv_is_flat_quoted_and_safe_for_spreadsheets(trail, tmp_path):
    out = tmp_path / "report.csv"
    result = cli("report", str(trail), "--format", "csv", "--output", str(out), cwd=trail.parent)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    raw = out.read_bytes()
    assert raw.count(b"\r\n") == 9  # header and 8 rows, RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    user = records_from_jsonl(trail)[0]["attributes"][schema.USER_NAME]
    data = (trail.parent / "data").as_uri()
    assert list(rows[0]) == ["resource", "resource_type", "user", "enduser", "action", "outcome", "error_type",
                             "count", "first_seen", "last_seen"]
    assert [(r["outcome"], r["resource"], r["enduser"], r["error_type"], r["count"]) for r in rows[:3]] == [
        ("denied", "'@SUM(1+1)", "'=cmd|' /C calc'!A0", "'-Forbidden", "1"),  # formula injection defused
        ("denied", "s3://models/churn.pt", "bob", "AccessDenied", "1"),
        ("failure", f"{data}/holdout.csv", "bob", "FileNotFoundError", "1"),
    ]
    assert all(r["outcome"] == "success" for r in rows[3:]) and len(rows) == 8
    assert {(r["resource"], r["enduser"], r["action"]) for r in rows[3:]} == {
        (f"{data}/customers.csv", "", "write"), (f"{data}/customers.csv", "alice", "read"),
        (HOSTILE_S3, HOSTILE_ENDUSER, "read"), (f"{data}/report%1B%5B31m.txt", "eve\\x1b[2J", "write"),
        ("s3://bucket/raw/", "", "list")} | {(r["resource"], r["enduser"], r["action"]) for r in rows[3:]
                                             if r["user"] != user}
    assert all(r["user"] == user for r in rows)


def test_report_keeps_valid_records_and_fails_on_malformed_input(tmp_path):
    trail = tmp_path / "t.jsonl"
    trail.write_text("oops\n" + otlp_line((T0, audit_attributes(uri="s3://b/k", seq=1))))
    result = cli("report", str(trail), "--format", "json", cwd=tmp_path)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["summary"]["records"] == 1
    assert document["input_errors"] == [{"file": str(trail), "line": 1, "message":
                                         "not JSON (Expecting value at character 1)"}]
    assert result.stderr.splitlines()[1] == f"otel-audit: {trail}:1: not JSON (Expecting value at character 1)"
    unwritable = cli("report", str(trail), "--output", str(tmp_path / "no" / "dir" / "r.txt"), cwd=tmp_path)
    assert unwritable.returncode == 1
    assert f"otel-audit: cannot write {tmp_path / 'no' / 'dir' / 'r.txt'}: No such file or directory" in unwritable.stderr


# -- html, rendered by a real browser -------------------------------------------------------

def chromium_binary() -> str:
    binary = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if binary is None:
        pytest.fail("chromium is missing: the HTML report is checked in a real browser; "
                    "install it with `apt-get install chromium`")
    return binary


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="otel-audit-chromium-") as profile:
        return subprocess.run(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
            capture_output=True, text=True, timeout=120)


class DomSummary(HTMLParser):
    """What the dumped DOM holds: elements by tag, marks, table rows, text."""

    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.marks: list[dict] = []
        self.timelines: dict[str, list[str]] = {}  # lane kind -> the svg's classes
        self.lane_buttons: dict[str, list[str]] = {}  # lane kind -> the button's classes
        self.stats: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.texts: list[str] = []
        self._svg_lanes = None
        self._table = None
        self._row = None
        self._cell = None
        self._stat = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "body":
            self.body = attrs
        if tag == "svg" and "timeline" in attrs.get("class", ""):
            self._svg_lanes = attrs["data-lanes"]
            self.timelines[attrs["data-lanes"]] = attrs["class"].split()
        if tag == "button" and "data-lanes" in attrs:
            self.lane_buttons[attrs["data-lanes"]] = attrs.get("class", "").split()
        if "mark" in attrs.get("class", "").split() and self._svg_lanes == "resource":
            self.marks.append(attrs)
        if tag == "div" and "data-stat" in attrs:
            self._stat = attrs["data-stat"]
        if tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        if tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
            self._row_class = attrs.get("class", "")
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg_lanes = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._stat is not None and data.strip():
            self.stats[self._stat] = data.strip()
            self._stat = None


def png_pixels(path: Path) -> tuple[int, int, list[bytes], int]:
    """Width, height, unfiltered rows and channels (3 RGB, 4 RGBA) of an 8-bit non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                corner = previous[i - channels] if i >= channels else 0
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows, channels


def test_html_report_renders_in_a_browser(trail, tmp_path):
    chromium_binary()
    page = tmp_path / "report.html"
    result = cli("report", str(trail), "--format", "html", "-o", str(page), cwd=trail.parent)
    assert result.returncode == 0 and result.stderr == ""
    source = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)  # nothing loaded from outside

    dumped = chromium("--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr
    dom = DomSummary()
    dom.feed(dumped.stdout)
    # the page's script ran: it counted the marks of the resource timeline
    assert dom.body.get("data-ready") == "true"
    assert (dom.body["data-marks"], dom.body["data-accesses"]) == ("8", "8")
    assert sorted(m["data-outcome"] for m in dom.marks) == ["denied"] * 2 + ["failure"] + ["success"] * 5
    assert all(f"outcome-{m['data-outcome']}" in m["class"].split() for m in dom.marks)
    assert {k: dom.stats[k] for k in ("accesses", "denied", "failed", "succeeded", "resources", "principals")} == {
        "accesses": "8", "denied": "2", "failed": "1", "succeeded": "5", "resources": "7", "principals": "6"}
    problems = dom.tables["problems"]
    assert [row[:4] for row in problems[1:]] == [
        ["denied", "-Forbidden", "1", "@SUM(1+1)"],
        ["denied", "AccessDenied", "1", "s3://models/churn.pt"],
        ["failure", "FileNotFoundError", "1", f"{(trail.parent / 'data').as_uri()}/holdout.csv"],
    ]
    assert [row[0] for row in dom.tables["resources"][1:4:2]][:2] == ["@SUM(1+1)", "s3://models/churn.pt"]
    # the hostile names are text: no element was injected, the only script is the page's own
    assert dom.tags.get("img", 0) == 0 and dom.tags["script"] == 1
    texts = "".join(dom.texts)
    assert HOSTILE_S3 in texts and f"(for {HOSTILE_ENDUSER})" in texts and "eve\\x1b[2J" in texts

    assert "hidden" not in dom.timelines["resource"] and "hidden" in dom.timelines["principal"]
    # the lane toggle: #by-principal clicks the "by principal" button when the page loads
    toggled = chromium("--dump-dom", page.as_uri() + "#by-principal")
    assert toggled.returncode == 0, toggled.stderr
    by_principal = DomSummary()
    by_principal.feed(toggled.stdout)
    assert "hidden" in by_principal.timelines["resource"] and "hidden" not in by_principal.timelines["principal"]
    assert "active" in by_principal.lane_buttons["principal"] and "active" not in by_principal.lane_buttons["resource"]

    shot = tmp_path / "report.png"
    taken = chromium(f"--screenshot={shot}", "--window-size=1280,900", page.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr
    width, height, rows, channels = png_pixels(shot)
    assert (width, height) == (1280, 900)
    colours = {row[i:i + 3] for row in rows[::4] for i in range(0, len(row), channels * 4)}
    assert len(colours) > 50  # not a blank page
    # the denied marks and card are drawn in the report's red (#d63a3a), successes in its green (#2f9e74)
    def near(colour, target):
        return all(abs(c - t) <= 12 for c, t in zip(colour, target))
    all_colours = {row[i:i + 3] for row in rows for i in range(0, len(row), channels)}
    assert any(near(c, (0xd6, 0x3a, 0x3a)) for c in all_colours)
    assert any(near(c, (0x2f, 0x9e, 0x74)) for c in all_colours)


def test_version(tmp_path):
    from otel_audit import __version__

    shown = cli("--version", cwd=tmp_path)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"otel-audit {__version__}\n", "")


def test_flush_help_documents_every_option_and_the_exit_statuses(tmp_path):
    shown = cli("flush", "--help", cwd=tmp_path)
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    for documented in ("--spool-dir DIR", "OTEL_PYTHON_AUDIT_SPOOL_DIR", "OTEL_LOGS_EXPORTER",
                       "exit status: 0 every record left in the spool was delivered", "1 some were not",
                       "2 usage error, or a spool directory that does not exist"):
        assert documented in text, documented


def test_flush_of_a_spool_directory_that_does_not_exist_is_a_usage_error(tmp_path):
    flushed = cli("flush", "--spool-dir", str(tmp_path / "tpyo"), cwd=tmp_path)
    assert (flushed.returncode, flushed.stdout) == (2, "")
    assert flushed.stderr == (f"otel-audit: flush: the spool directory {tmp_path / 'tpyo'} does not exist "
                              "(--spool-dir or OTEL_PYTHON_AUDIT_SPOOL_DIR)\n")


def test_flush_with_nothing_pending_says_nothing_about_exporters(tmp_path):
    (tmp_path / "spool" / "svc").mkdir(parents=True, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    flushed = subprocess.run([sys.executable, "-m", "otel_audit", "flush", "--spool-dir", str(tmp_path / "spool")],
                             cwd=tmp_path, env={**env, "OTEL_LOGS_EXPORTER": "none"}, capture_output=True,
                             text=True, timeout=60)
    assert (flushed.returncode, flushed.stderr) == (0, "")
    assert flushed.stdout == f"otel-audit flush: 0 records delivered from {tmp_path / 'spool'} (nothing left in the spool)\n"


# Measures the rendered page from inside the browser and leaves the result on <body data-layout>, which
# --dump-dom shows.  It runs in a copy of the page whose policy also allows this script (by its hash).
LAYOUT_PROBE = """
(function () {
  var out = {};
  out.pageOverflow = document.documentElement.scrollWidth - window.innerWidth;
  out.tableOverflow = [];
  document.querySelectorAll('.card table').forEach(function (t) {
    var card = t.closest('.card');
    if (t.scrollWidth > card.clientWidth) out.tableOverflow.push(t.id);
  });
  var svg = document.querySelector('svg.timeline[data-lanes=resource]');
  out.timelineScale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  out.brokenWords = [];
  var walker = document.createTreeWalker(document.querySelector('header .meta'), NodeFilter.SHOW_TEXT), node;
  while ((node = walker.nextNode())) {
    var at = 0;
    node.textContent.split(/(\\s+)/).forEach(function (piece) {
      if (piece.trim() && piece.length <= 24) {
        var range = document.createRange();
        range.setStart(node, at); range.setEnd(node, at + piece.length);
        if (range.getClientRects().length > 1) out.brokenWords.push(piece);
      }
      at += piece.length;
    });
  }
  var box = document.getElementById('search'), style = getComputedStyle(box);
  var ctx = document.createElement('canvas').getContext('2d');
  ctx.font = style.font;
  out.placeholderRoom = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)
                        - ctx.measureText(box.placeholder).width;
  out.lanes = [];
  svg.querySelectorAll('g.lane').forEach(function (lane) {
    var marks = Array.prototype.slice.call(lane.querySelectorAll('.mark')), overlaps = 0, count = 0;
    marks.forEach(function (m, i) {
      count += parseInt(m.getAttribute('data-count'), 10);
      var a = m.getBoundingClientRect();
      marks.slice(i + 1).forEach(function (n) {
        var b = n.getBoundingClientRect();
        if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps += 1;
      });
    });
    out.lanes.push({label: lane.querySelector('.lane-label').textContent.replace(lane.querySelector('.lane-label title').textContent, ''),
                     shown: lane.querySelector('.lane-count').textContent, marks: marks.length, counted: count,
                     overlaps: overlaps, titles: marks.map(function (m) { return m.querySelector('title').textContent; })});
  });
  document.body.setAttribute('data-layout', JSON.stringify(out));
})();
"""


def _probed(page: Path) -> Path:
    import base64
    import hashlib

    source = page.read_text()
    digest = base64.b64encode(hashlib.sha256(LAYOUT_PROBE.encode()).digest()).decode()
    probed = page.with_name("probed-" + page.name)
    probed.write_text(source.replace("script-src 'sha256-", f"script-src 'sha256-{digest}' 'sha256-", 1)
                      .replace("</body>", f"<script>{LAYOUT_PROBE}</script></body>", 1))
    return probed


LONG_DIR = "file:///srv/projects/customer-analytics/2024-quarterly-exports/validated"


@pytest.mark.parametrize("width", [1400, 800, 700, 460])
def test_html_report_layout_at_every_width(tmp_path, width):
    chromium_binary()
    trail = tmp_path / "burst.jsonl"
    minute = 60_000_000_000
    trail.write_text(otlp_line(
        # a write and two reads of one file a few milliseconds apart, in an hour of other accesses
        (T0, audit_attributes(uri=f"{LONG_DIR}/holdout-final.csv", action="write", seq=1)),
        (T0 + 2_000_000, audit_attributes(uri=f"{LONG_DIR}/holdout-final.csv", action="read", seq=2)),
        (T0 + 3_000_000, audit_attributes(uri=f"{LONG_DIR}/holdout-final.csv", action="read", outcome="failure",
                                          error="FileNotFoundError", seq=3)),
        (T0 + 5_000_000, audit_attributes(uri=f"{LONG_DIR}/holdout-final.csv", action="read", seq=4)),
        (T0 + 30 * minute, audit_attributes(uri="s3://models/churn.pt", user="bob", seq=5)),
        (T0 + 60 * minute, audit_attributes(uri="s3://models/churn.pt", action="write", outcome="denied",
                                            error="AccessDenied", seq=6)),
        (T0 + 60 * minute + 1_000_000, audit_attributes(uri="s3://models/churn.pt", action="write", seq=7)),
    ))
    page = tmp_path / "report.html"
    assert cli("report", str(trail), "--format", "html", "-o", str(page), cwd=tmp_path).returncode == 0
    dumped = chromium("--dump-dom", f"--window-size={width},900", _probed(page).as_uri())
    assert dumped.returncode == 0, dumped.stderr
    dom = DomSummary()
    dom.feed(dumped.stdout)
    layout = json.loads(dom.body["data-layout"])

    assert layout["pageOverflow"] <= 0  # the page never scrolls sideways: a wide part scrolls in its card
    assert layout["timelineScale"] == 1  # the chart is never shrunk (its text stays readable): it scrolls
    if width >= 800:
        assert layout["tableOverflow"] == []  # the tables fit
    assert layout["brokenWords"] == []  # the header wraps between words ("filters: none", "(7 records)")
    assert layout["placeholderRoom"] >= 0  # the filter box shows its whole placeholder

    lanes = {lane["label"]: lane for lane in layout["lanes"]}
    assert sorted(lanes) == ["file:///…/validated/holdout-final.csv", "s3://models/churn.pt"]  # the file name whole
    for lane in lanes.values():
        assert lane["overlaps"] == 0  # every mark can be seen and hovered
        assert lane["counted"] == int(lane["shown"])  # and the lane's count is what its marks hold
    burst = lanes["file:///…/validated/holdout-final.csv"]
    assert (burst["marks"], burst["counted"]) == (3, 4)  # write; read ×2 (one mark, counted); the failure
    assert all("\\x0a" not in title and "\n" in title for title in burst["titles"])  # real line breaks
    assert any(title.startswith("2 accesses, ") for title in burst["titles"])
