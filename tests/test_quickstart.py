"""The README's first command, minus the venv: the quickstart under opentelemetry-instrument, then `show`."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, instrumented_env, run_instrumented


def _show(*files, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_audit", "show", *map(str, files)],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_quickstart_then_show(tmp_path):
    env = instrumented_env(OTEL_SERVICE_NAME="quickstart", OTEL_LOGS_EXPORTER="audit_file")
    result = run_instrumented(REPO / "examples" / "quickstart.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "no holdout set" in result.stdout
    shown = _show("otel-audit.jsonl", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == ""
    data = (tmp_path / "quickstart-data").as_uri()
    script = REPO / "examples" / "quickstart.py"
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["TIME", "USER", "ACTION", "TYPE", "OUTCOME", "API", "CALL", "SITE", "RESOURCE"]
    # the columns are aligned: cut every row where the header's columns start
    starts = [header.index(name) for name in ("USER", "ACTION", "TYPE", "OUTCOME", "API", "CALL SITE", "RESOURCE")]
    cells = [[row[a:b].rstrip() for a, b in zip([0, *starts], [*starts, None])] for row in rows]
    user = cells[0][1]
    assert [row[1:] for row in cells] == [
        [user, "write", "data", "success", "pandas.DataFrame.to_csv", f"{script}:17", f"{data}/customers.csv"],
        [user, "read", "data", "success", "pandas.read_csv", f"{script}:20", f"{data}/customers.csv"],
        [user, "write", "model", "success", "joblib.dump", f"{script}:22", f"{data}/churn.joblib"],
        [user, "read", "model", "success", "joblib.load", f"{script}:25", f"{data}/churn.joblib"],
        [user, "read", "data", "failure: FileNotFoundError", "pandas.read_csv", f"{script}:30", f"{data}/holdout.csv"],
    ]
    assert [row[0] for row in cells] == sorted(row[0] for row in cells)  # oldest first
    # and the README's next step: the trail proves itself whole
    verified = subprocess.run([sys.executable, "-m", "otel_audit", "verify", "otel-audit.jsonl"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "(quickstart): intact, closed" in verified.stdout and "the trail verifies: 1 streams" in verified.stdout


def test_show_reports_bad_lines_and_keeps_the_good_ones(tmp_path):
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file")
    script = tmp_path / "one.py"
    script.write_text("open('x.txt', 'w').close()\n")
    assert run_instrumented(script, cwd=tmp_path, env=env).returncode == 0
    trail = tmp_path / "otel-audit.jsonl"
    good = trail.read_text()
    trail.write_text("{not json\n" + good + '{"resourceLogs": 3}\n')
    shown = _show(trail, cwd=tmp_path)
    assert shown.returncode == 1  # the valid record is shown, and the malformed lines make the exit status 1
    rows = shown.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[2:5] == ["write", "data", "success"]
    assert rows[0].endswith((tmp_path / "x.txt").as_uri())
    errors = shown.stderr.splitlines()
    assert len(errors) == 3
    assert errors[0] == f"otel-audit: {trail}:1: not JSON (Expecting property name enclosed in double quotes at character 2)"
    assert errors[1] == f"otel-audit: {trail}:{len(good.splitlines()) + 2}: resourceLogs is a number, not a list"
    assert errors[2] == "otel-audit: 2 input problem(s), see above; every record that could be read is shown"
    missing = _show(tmp_path / "absent.jsonl", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == f"otel-audit: {tmp_path / 'absent.jsonl'}: cannot read: No such file or directory"
