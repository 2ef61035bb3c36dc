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
