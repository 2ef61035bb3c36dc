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
    lines = [line.split("  ", 1)[1] for line in shown.stdout.splitlines()]  # drop the timestamp
    user = lines[0].split(" ", 1)[0]
    assert lines == [
        f"{user} write data {data}/customers.csv via builtins.open (success)  [{script}:17]",
        f"{user} read data {data}/customers.csv via pandas.read_csv (success)  [{script}:20]",
        f"{user} write model {data}/churn.joblib via joblib.dump (success)  [{script}:22]",
        f"{user} read model {data}/churn.joblib via joblib.load (success)  [{script}:25]",
        f"{user} read data {data}/holdout.csv via pandas.read_csv (failure: FileNotFoundError)  [{script}:30]",
    ]


def test_show_reports_bad_lines_and_keeps_the_good_ones(tmp_path):
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file")
    script = tmp_path / "one.py"
    script.write_text("open('x.txt', 'w').close()\n")
    assert run_instrumented(script, cwd=tmp_path, env=env).returncode == 0
    trail = tmp_path / "otel-audit.jsonl"
    good = trail.read_text()
    trail.write_text("{not json\n" + good + '{"resourceLogs": 3}\n')
    shown = _show(trail, cwd=tmp_path)
    assert shown.returncode == 0
    assert len(shown.stdout.splitlines()) == 1 and "write data" in shown.stdout
    errors = shown.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"otel-audit: {trail}:1: not an OTLP/JSON logs line (JSONDecodeError")
    assert errors[1].startswith(f"otel-audit: {trail}:{len(good.splitlines()) + 2}: not an OTLP/JSON logs line")
    missing = _show(tmp_path / "absent.jsonl", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == f"otel-audit: cannot read {tmp_path / 'absent.jsonl'}: No such file or directory\n"
