"""Smoke run of ``benchmarks/bench_access.py --quick``: it runs, exports what it should, prints its lines.

No timing is asserted (machines are noisy): only that every case ran, the
receiver got exactly the records emitted, and the report lines are there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_access.py"


def test_bench_access_quick_runs_and_counts_records():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600,
    )
    output = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{output}\nstderr:\n{done.stderr}"

    n = int(re.search(r"\bN=(\d+) accesses", output).group(1))
    counts = {
        case: re.search(rf"^\s+{case}\s+exported ([\d/, ]+) \(", output, re.MULTILINE)
        for case in ("audited", "excluded", "stock", "logging")
    }
    assert all(counts.values()), output
    expected = {"audited": n, "excluded": 0, "stock": n, "logging": n}
    for case, match in counts.items():
        pairs = [pair.strip().split("/") for pair in match.group(1).split(",")]
        assert pairs and all(int(got) == int(want) == expected[case] for got, want in pairs), (case, output)
    assert re.search(r"non-excluded sanity access recorded: \[1(, 1)*\]", output), output
    assert "stock records carry the same 16 attributes" in output, output

    for case in ("bare", "audited", "excluded", "stock", "logging"):
        assert re.search(rf"^\s+{case}\s+\d+\.\d+\s+\d+\.\d+×", output, re.MULTILINE), (case, output)
    assert re.search(r"^audited / bare = \d+\.\d\d× \(target ≤ 1\.0×\)$", output, re.MULTILINE), output
    assert re.search(r"^excluded extra = -?\d+\.\d\d µs \(target ≤ 0\.5 µs\)$", output, re.MULTILINE), output
