"""Smoke run of ``benchmarks/bench_access.py --quick``: it runs, exports what it should, prints its lines.

No timing is asserted (machines are noisy): only that every case ran, the
receiver got exactly the records emitted (for ``durable``, shipped from the
spool: exactly N, all distinct, none fallen back to the in-memory pipeline),
and the report lines are there.
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
        for case in ("audited", "spans", "durable", "durable_http", "durable_file", "excluded", "stock", "logging")
    }
    assert all(counts.values()), output
    warmup = 100  # --quick's: the audit_file trail holds the warm-up's records too
    expected = {"audited": n, "spans": n, "durable": n, "durable_http": n, "durable_file": warmup + n, "excluded": 0,
                "stock": n, "logging": n}
    for case, match in counts.items():
        pairs = [pair.strip().split("/") for pair in match.group(1).split(",")]
        assert pairs and all(int(got) == int(want) == expected[case] for got, want in pairs), (case, output)
    spans = re.search(r"^\s+spans\s+exported .*; spans at the receiver: \[([\d, ]+)\]$", output, re.MULTILINE)
    assert spans and [int(x) for x in spans.group(1).split(",")] == [n], output
    assert re.search(r"non-excluded sanity access recorded: \[1(, 1)*\]", output), output
    assert "stock records carry the same 17 attributes" in output, output
    for case in ("durable", "durable_http", "durable_file"):
        durable = re.search(rf"^\s+{case}\s+exported .*; distinct audit\.record\.id: \[([\d, ]+)\]; not spooled: "
                            r"\[([\d, ]+)\]$", output, re.MULTILINE)
        assert durable, output
        assert [int(x) for x in durable.group(1).split(",")] == [expected[case]], output
        assert all(int(x) == 0 for x in durable.group(2).split(",")), output
        assert f"{case} records carry the same 17 attributes (keys and value kinds) as in-memory ones" in output, output

    main_table = output.split("whole-process CPU per access", 1)[1].split("\n\n", 1)[0]
    for case in ("bare", "audited", "spans", "durable", "durable_http", "durable_file", "excluded", "stock", "logging"):
        assert re.search(rf"^\s+{case}\s+\d+\.\d+\s+\d+\.\d+×", main_table, re.MULTILINE), (case, output)
    assert re.search(r"^audited / bare = \d+\.\d\d× \(in-memory delivery", output, re.MULTILINE), output
    assert re.search(r"^spans / bare = \d+\.\d\d× \(", output, re.MULTILINE), output
    for case in ("durable", "durable_http", "durable_file"):
        assert re.search(rf"^{case} / bare = \d+\.\d\d×: extra -?\d+\.\d\d× bare \(target: extra ≤ 1\.0×",
                         output, re.MULTILINE), (case, output)
    hot_table = output.split("the hot path alone: main-thread CPU per access", 1)[1].split("\n\n", 1)[0]
    for case in ("bare", "audited", "spans", "durable"):
        assert re.search(rf"^\s+{case}\s+\d+\.\d+\s+\d+\.\d+×\s+-?\d+\.\d+\s", hot_table, re.MULTILINE), (case, output)
    assert re.search(r"^excluded extra = -?\d+\.\d\d µs \(target ≤ 0\.5 µs\)$", output, re.MULTILINE), output


def test_bench_throughput_delivers_every_record_from_the_threads():
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "bench_throughput.py"), "--records", "4000", "--threads", "4"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "4,000 records from 4 threads, durable delivery over OTLP grpc:" in done.stdout, done.stdout
    # every record reached the receiver (the script exits 1 otherwise), and each row is printed
    assert re.search(r"^  delivered +[\d,]+ records/s, first access to the receiver holding all 4,000 ", done.stdout,
                     re.MULTILINE), done.stdout
    for row in ("bare accesses", "audited accesses", "process CPU", "resident memory"):
        assert f"  {row} " in done.stdout, done.stdout


def test_bench_startup_compares_with_otel_audit_disabled():
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "bench_startup.py"), "--repeat", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    for what in ("wall", "CPU (user + system)"):
        block = done.stdout.split(f"  {what}:\n", 1)[1]
        assert re.match(r"    without otel-audit +\d+\.\d ms .*\n    with otel-audit +\d+\.\d ms .*\n"
                        r"    added +[+-]\d+\.\d ms +\(\d\.\d\dx; target <= \+15 ms: (met|NOT met)\)", block), done.stdout


def test_bench_workloads_runs_plain_and_audited_and_prints_the_ratios():
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "bench_workloads.py"), "--workloads", "npy-small,csv-small", "--repeat", "1"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    for name in ("npy-small", "csv-small"):
        assert re.search(rf"^  {name} +\d+\.\d+ s +\d+\.\d+ s +\d+\.\d+x  CPU <= 1\.15x: (met|NOT met)$", done.stdout,
                         re.MULTILINE), done.stdout
