#!/usr/bin/env python
"""What otel-audit adds to a program's start: ``opentelemetry-instrument python -c pass``.

Runs the same command with otel-audit and with it disabled
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_audit``: the distro, the SDK and its exporters start
all the same), interleaved, ``--repeat`` times each, and prints the median wall time and CPU time
(user + system, steadier than wall time on a busy machine) of each, the difference, and the ratio.  The target (issue 11): at most 15 ms more.  The logs exporter is the
``audit_file`` sink by default (``--exporter otlp`` for gRPC to a port nobody listens on: nothing is
sent by ``pass``).  ``-X importtime`` of one audited run, for the modules to blame, with ``--imports``.

Start-up times on these machines spread by a factor of two from run to run (460-980 ms for the same
command within a minute), so a median difference of 15 ms moves by as much between runs.
``--instructions`` adds the steady measure: the instructions each start executes, counted by
``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``, after a run that wrote the bytecode: repeatable to
a few thousand of the ~900 million), and what the added ones come to at the median CPU time per
instruction of the runs without otel-audit.

    .venv/bin/python benchmarks/bench_startup.py                  # --repeat 20, --exporter audit_file
    .venv/bin/python benchmarks/bench_startup.py --instructions   # and the instruction counts (+1 min)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_MS = 15.0


def _instrument() -> str:
    found = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if found is None:
        sys.exit("opentelemetry-instrument is not installed beside this Python (pip install -e .)")
    return found


def _env(exporter: str, disabled: bool, spool: str) -> dict:
    # PYTHONDONTWRITEBYTECODE (set on some machines, these among them) would compile every module of an
    # editable install from source at each start, as no installed package is: the warm-up runs write them
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(OTEL_SERVICE_NAME="bench-startup", OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER=exporter, OTEL_PYTHON_AUDIT_SPOOL_DIR=spool,
               OTEL_PYTHON_AUDIT_FILE=os.path.join(spool, "trail.jsonl"))
    if exporter == "otlp":
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_INSECURE="true")
    if disabled:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "otel_audit"
    return env


def _once(command: list[str], env: dict) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0 or result.stderr.strip():
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed * 1000, cpu * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--exporter", choices=("audit_file", "otlp"), default="audit_file")
    parser.add_argument("--imports", action="store_true", help="print the slowest imports otel-audit brings")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind too")
    args = parser.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        sys.exit("bench_startup: valgrind is not installed (Debian: apt-get install valgrind)")
    command = [_instrument(), sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as spool:
        audited_env, plain_env = _env(args.exporter, False, spool), _env(args.exporter, True, spool)
        _once(command, audited_env), _once(command, plain_env)  # warm the file cache, write bytecode
        audited, plain = [], []
        for _ in range(args.repeat):
            audited.append(_once(command, audited_env))
            plain.append(_once(command, plain_env))
        if args.instructions:
            counted = {"plain": _instructions(command, plain_env), "audited": _instructions(command, audited_env)}
        if args.imports:
            result = subprocess.run([*command[:2], "-X", "importtime", "-c", "pass"], env=audited_env,
                                    capture_output=True, text=True)
            rows = []
            for line in result.stderr.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[1].strip().isdigit():
                    rows.append((int(parts[1]), parts[2].rstrip()))
            print("slowest cumulative imports (µs), audited run:")
            for cumulative, name in sorted(rows, reverse=True)[:15]:
                print(f"  {cumulative:>8}  {name}")
    print(f"opentelemetry-instrument python -c pass, logs exporter {args.exporter}, median of {args.repeat} "
          f"(min-max):")
    for index, what in ((0, "wall"), (1, "CPU (user + system)")):
        a = statistics.median(run[index] for run in audited)
        p = statistics.median(run[index] for run in plain)
        spread = lambda runs: f"{min(r[index] for r in runs):.1f}-{max(r[index] for r in runs):.1f}"  # noqa: E731
        print(f"  {what}:")
        print(f"    without otel-audit  {p:7.1f} ms  ({spread(plain)})")
        print(f"    with otel-audit     {a:7.1f} ms  ({spread(audited)})")
        print(f"    added               {a - p:+7.1f} ms  ({a / p:.2f}x; target <= +{TARGET_MS:.0f} ms: "
              f"{'met' if a - p <= TARGET_MS else 'NOT met'})")
    if args.instructions:
        p_i, a_i = counted["plain"], counted["audited"]
        per_instruction = statistics.median(run[1] for run in plain) / p_i  # CPU ms per instruction
        added = (a_i - p_i) * per_instruction
        print("  instructions (callgrind, the audited program's process):")
        print(f"    without otel-audit  {p_i:>13,}")
        print(f"    with otel-audit     {a_i:>13,}")
        print(f"    added               {a_i - p_i:>+13,}  ({a_i / p_i:.3f}x; at the runs' CPU time per instruction "
              f"{added:+.1f} ms; target <= +{TARGET_MS:.0f} ms: {'met' if added <= TARGET_MS else 'NOT met'})")
    return 0


def _instructions(command: list[str], env: dict) -> int:
    """Instructions the program's own process executes (``opentelemetry-instrument`` execs Python: the
    count is of the process image that ends, the one otel-audit runs in)."""
    env = {**env, "PYTHONHASHSEED": "0"}
    counts = []
    for _ in range(2):  # the first writes any missing bytecode: the second is the one counted
        result = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                                 "--callgrind-out-file=/dev/null", *command], env=env, capture_output=True, text=True)
        found = re.findall(r"Collected\s*:\s*(\d+)", result.stderr)
        if result.returncode != 0 or not found:
            sys.exit(f"callgrind run failed ({result.returncode}):\n{result.stderr[-2000:]}")
        counts.append(int(found[-1]))
    return counts[-1]


if __name__ == "__main__":
    sys.exit(main())
