"""Installed the way a user installs it: a wheel built from the checkout, into a fresh virtualenv (no
editable install, no checkout on the path), then the README's first command's job and the HTML report.
A file only an editable install finds (package data such as the report page's assets) cannot go missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO, instrumented_env, otel_audit_lines, records_from_jsonl


def _run(*command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_quickstart_runs_from_a_wheel_in_a_fresh_virtualenv(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO)
    [wheel] = dist.glob("otel_audit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "otel_audit.pth" in names  # the start-up hook, at the top of site-packages (setup.py)
    assert {"otel_audit/assets/report.css", "otel_audit/assets/report.js", "otel_audit/delivery/ownfiles.py"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    # (not with a PYTHONPATH that names a checkout: pip would take its egg-info for otel-audit installed)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[pandas,joblib]", "opentelemetry-distro",
         "scikit-learn", env=clean)

    work = tmp_path / "work"  # outside the checkout: nothing of it is importable from here
    work.mkdir()
    shutil.copy(REPO / "examples" / "quickstart.py", work)
    env = {k: v for k, v in instrumented_env(OTEL_SERVICE_NAME="quickstart", OTEL_LOGS_EXPORTER="audit_file").items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    located = _run(venv / "bin" / "python", "-c", "import otel_audit; print(otel_audit.__file__)", cwd=work, env=env)
    assert located.stdout.startswith(str(venv)), located.stdout  # the installed copy, not the checkout
    job = _run(venv / "bin" / "opentelemetry-instrument", venv / "bin" / "python", "quickstart.py", cwd=work, env=env)
    assert "no holdout set" in job.stdout and otel_audit_lines(job.stderr) == [], job.stderr
    records = records_from_jsonl(work / "otel-audit.jsonl")
    assert [r["attributes"]["audit.api"] for r in records] == [
        "pandas.DataFrame.to_csv", "pandas.read_csv", "joblib.dump", "joblib.load", "pandas.read_csv"]

    shown = _run(venv / "bin" / "otel-audit", "show", "otel-audit.jsonl", cwd=work, env=env)
    assert [line.split("  ")[-1].rsplit("/", 1)[-1] for line in shown.stdout.splitlines() if "file://" in line] == [
        "customers.csv", "customers.csv", "churn.joblib", "churn.joblib", "holdout.csv"]
    _run(venv / "bin" / "otel-audit", "report", "otel-audit.jsonl", "--format", "html", "-o", "report.html", cwd=work,
         env=env)
    page = (work / "report.html").read_text()
    assert (REPO / "otel_audit" / "assets" / "report.css").read_text() in page
    assert (REPO / "otel_audit" / "assets" / "report.js").read_text() in page
    assert os.stat(work / "report.html").st_mode & 0o777 == 0o600

    # A typo in OTEL_LOGS_EXPORTER: OpenTelemetry loads no instrumentation, otel-audit spools anyway
    # (test_startup.py has the details; here: the installed wheel's hook runs)
    spool = tmp_path / "spool"
    typo = _run(venv / "bin" / "opentelemetry-instrument", venv / "bin" / "python", "quickstart.py", cwd=work,
                env={**env, "OTEL_LOGS_EXPORTER": "otpl", "OTEL_PYTHON_AUDIT_SPOOL_DIR": str(spool)})
    assert "otel-audit: OTEL_LOGS_EXPORTER='otpl': 'otpl' is not an installed logs exporter" in typo.stderr
    flushed = _run(venv / "bin" / "otel-audit", "flush", "--spool-dir", spool, cwd=work, env=env)
    assert "7 records delivered" in flushed.stderr + flushed.stdout, flushed.stderr  # 5 accesses, "started", the closing checkpoint
    assert len(records_from_jsonl(work / "otel-audit.jsonl")) == 10
