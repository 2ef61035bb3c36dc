"""Behaviour preservation: the instrumented libraries' own shipped test suites give the same results with otel-audit.

Each test runs ``tests/compat/run_compat.py --suite <suite>``: the suite twice in
subprocesses, plain and under ``opentelemetry-instrument`` with otel-audit
exporting to a real audit file, and compares the failing tests (see that
script's docstring).  They take minutes (measured on 2 cores: joblib ~6 min,
pandas' parser tests ~2.5 min, pyarrow's I/O tests ~2 min, h5py ~1 min);
``-m "not compat"`` leaves them out.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN_COMPAT = Path(__file__).resolve().parent / "compat" / "run_compat.py"


@pytest.mark.compat
@pytest.mark.parametrize("suite", ["joblib", "pandas-parser", "pyarrow-io", "h5py"])
def test_library_suite_unchanged_by_otel_audit(suite: str) -> None:
    result = subprocess.run(
        [sys.executable, str(RUN_COMPAT), "--suite", suite],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600,
    )
    summary = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr.strip() else "")
    print(summary)
    assert result.returncode == 0, f"run_compat.py --suite {suite} exited {result.returncode}:\n{summary}"


CPYTHON_IO_TESTS = ("test_fileio", "test_file", "test_io")  # FileIO, open() and the io stack over them


@pytest.mark.compat
def test_cpython_io_tests_unchanged_by_otel_audit(tmp_path: Path) -> None:
    """CPython's own io tests (``python -m test``, its runner) give the same totals under otel-audit.

    otel-audit gives ``io.FileIO`` a Python ``__init__`` and wraps ``open``: the standard library's
    tests of them are the sharpest check that nothing about them changed.  About 35 s.
    """
    import importlib.util

    from conftest import OPENTELEMETRY_INSTRUMENT, instrumented_env

    if importlib.util.find_spec("test.test_fileio") is None:
        pytest.skip("this Python ships without its test package")
    command = [sys.executable, "-m", "test", *CPYTHON_IO_TESTS]
    totals = {}
    for mode, run in (("plain", command), ("audited", [OPENTELEMETRY_INSTRUMENT, *command])):
        env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"))
        result = subprocess.run(run, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=600)
        lines = [line for line in result.stdout.splitlines() if line.startswith(("Total tests:", "Result:"))]
        assert result.returncode == 0 and lines[-1] == "Result: SUCCESS", f"{mode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        totals[mode] = lines
    assert totals["audited"] == totals["plain"]
    assert "otel-audit:" not in result.stderr, result.stderr
