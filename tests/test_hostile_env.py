"""Nothing switches auditing off: every OTEL_PYTHON_AUDIT_* variable set to hostile values, each run
under the real `opentelemetry-instrument`.  Every run must still audit the program's one access (in
the trail, or spooled and delivered by `otel-audit flush` where the trail itself cannot be written),
say once what was wrong with the value, and keep every line short."""

from __future__ import annotations

import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BIN, instrumented_env, otel_audit_lines, records_from_jsonl, run_instrumented
from otel_audit import schema
from otel_audit.config import SETTINGS, AuditConfig, ConfigError
from otel_audit.resources import Redactor

MAX_STDERR_LINE = 500  # "a few hundred characters"

JUNK = "\x01\x02\x7f\udcff\udcfe\u202e;|&$(rm -rf ~)`*?[\\"  # control bytes, undecodable bytes, bidi, shell


def _records(path: Path) -> list[dict]:
    """The records in a trail that may follow other text (a hostile FILE named an existing file)."""
    lines = [line for line in path.read_text(errors="replace").splitlines(keepends=True) if line.startswith("{")]
    clean = path.with_name(path.name + ".lines")
    clean.write_text("".join(lines))
    return records_from_jsonl(clean)


def _hostile_values(tmp: Path) -> dict[str, str]:
    a_file = tmp / "a-file"
    a_file.write_text("not a directory")
    a_directory = tmp / "a-directory"
    a_directory.mkdir()
    return {
        "empty": "",
        "huge": "x" * 100_000,
        "junk": JUNK,
        "negative": "-1",
        "overflow": "1e309",
        "file-for-directory": str(a_file),
        "directory-for-file": str(a_directory),
        "unwritable": "/proc/otel-audit-cannot-create/x",  # not even root can create there
    }


VARIABLES = [s.env for s in SETTINGS] + ["OTEL_PYTHON_AUDIT_NO_SUCH_SETTING"]
JOB = "with open('data.txt') as handle:\n    handle.read()\nprint('done')\n"


def _run_one(tmp: Path, variable: str, label: str, value: str) -> tuple[str, str, str | None]:
    """One run; returns (variable, label, what went wrong or None)."""
    work = tmp / f"{variable}-{label}"
    work.mkdir()
    (work / "data.txt").write_text("payload")
    (work / "job.py").write_text(JOB)
    trail = work / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="2", XDG_STATE_HOME=str(work / "state"))
    env[variable] = value
    result = run_instrumented(work / "job.py", cwd=work, env=env, timeout=120)
    problems = []
    if result.returncode != 0 or result.stdout != "done\n":
        problems.append(f"exit {result.returncode}, stdout {result.stdout[:200]!r}")
    if "Failed to auto initialize" in result.stderr or "Traceback" in result.stderr:
        problems.append("an exception escaped")
    long_lines = [len(line) for line in result.stderr.splitlines() if len(line) > MAX_STDERR_LINE]
    if long_lines:
        problems.append(f"stderr lines of {long_lines} characters")
    try:
        config = AuditConfig.from_env({variable: value}, strict=True)
    except (ConfigError, OverflowError):  # (an OverflowError was how 1e309 once switched auditing off)
        config = AuditConfig()
        if f"otel-audit: {variable}" not in result.stderr:
            problems.append("the bad value was not reported")
    expected = {schema.FILE_PATH: str(work / "data.txt")}
    Redactor(config.redact)(expected)  # a pattern such as "-1" may rightly mask part of the path

    def audited(path: Path) -> bool:
        try:
            records = _records(path) if path.is_file() else []
        except OSError:  # a name too long to be a file
            return False
        return [(r["attributes"][schema.AUDIT_API], r["attributes"][schema.FILE_PATH]) for r in records] == [
            ("builtins.open", expected[schema.FILE_PATH])]

    # the configured trail, a trail the hostile value names (relative to the program's directory: "-1" is a
    # fine file name), or the default one the bad value was replaced by
    trails = [trail, work / "otel-audit.jsonl"] + ([work / config.file] if variable.endswith("_FILE") else [])
    if not any(audited(path) for path in trails):
        if any(line.startswith("otel-audit: not audited: ") and variable in line
               for line in otel_audit_lines(result.stderr)):
            pass  # an include/exclude glob that leaves the file out: said, not silent
        else:
            # The trail could not be written: the record must be in the spool, and this said.
            good = work / "flushed.jsonl"
            flushed = subprocess.run([str(BIN / "otel-audit"), "flush", "--redirect"], cwd=work, capture_output=True,
                                     text=True, env={**env, "OTEL_PYTHON_AUDIT_FILE": str(good)}, timeout=120)
            if "cannot write the audit trail" not in result.stderr:
                problems.append("no record in the trail, and nothing said")
            if flushed.returncode != 0 or not audited(good):
                problems.append(f"no record in the trail nor in the spool (flush: {flushed.stdout}{flushed.stderr})")
    return variable, label, ("; ".join(problems) + f"\n  stderr: {result.stderr[:1500]}") if problems else None


def test_no_hostile_value_of_any_setting_switches_auditing_off(tmp_path):
    values = _hostile_values(tmp_path)
    runs = [(variable, label, value) for variable in VARIABLES for label, value in values.items()]
    with ThreadPoolExecutor(max_workers=3) as pool:  # subprocesses: 2 cores, some runs wait on I/O
        outcomes = list(pool.map(lambda run: _run_one(tmp_path, *run), runs))
    failures = [f"{variable} = {label}: {problem}" for variable, label, problem in outcomes if problem]
    assert len(outcomes) == len(VARIABLES) * len(values) >= 100
    assert not failures, f"{len(failures)} of {len(outcomes)} runs:\n" + "\n".join(failures)


@pytest.mark.parametrize("variable, value", [
    ("OTEL_PYTHON_AUDIT_INCLUDE_PATHS", "/nowhere/*"),
    ("OTEL_PYTHON_AUDIT_EXCLUDE_PATHS", "*"),
])
def test_a_glob_that_leaves_resources_out_is_said_once(tmp_path, variable, value):
    (tmp_path / "job.py").write_text(textwrap.dedent("""
        for name in ("a.txt", "b.txt"):
            with open(name, "w") as handle:
                handle.write("x")
    """))
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "t.jsonl"),
                           **{variable: value})
    result = run_instrumented(tmp_path / "job.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    said = otel_audit_lines(result.stderr)
    why = "is outside OTEL_PYTHON_AUDIT_INCLUDE_PATHS" if "INCLUDE" in variable else "matches OTEL_PYTHON_AUDIT_EXCLUDE_PATHS"
    assert said == [f"otel-audit: not audited: '{tmp_path / 'a.txt'}', which {why} (said once; further resources "
                    "it leaves out are not listed)"]
    assert not (tmp_path / "t.jsonl").exists()
