#!/usr/bin/env python
"""What otel-audit adds to a program's start: ``opentelemetry-instrument python -c pass``.

Runs the same command with otel-audit and with it disabled
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_audit``: the distro, the SDK and its exporters start
all the same), interleaved, ``--repeat`` times each, and prints the median wall time of each, the
difference, and the ratio.  The target (issue 11): at most 15 ms more.  The logs exporter is the
``audit_file`` sink by default (``--exporter otlp`` for gRPC to a port nobody listens on: nothing is
sent by ``pass``).  ``-X importtime`` of one audited run, for the modules to blame, with ``--imports``.

    .venv/bin/python benchmarks/bench_startup.py            # --repeat 20, --exporter otlp, --imports
"""

from __future__ import annotations

import argparse
import os
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_SERVICE_NAME="bench-startup", OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER=exporter, OTEL_PYTHON_AUDIT_SPOOL_DIR=spool,
               OTEL_PYTHON_AUDIT_FILE=os.path.join(spool, "trail.jsonl"))
    if exporter == "otlp":
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_INSECURE="true")
    if disabled:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "otel_audit"
    return env


def _once(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or result.stderr.strip():
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--exporter", choices=("audit_file", "otlp"), default="audit_file")
    parser.add_argument("--imports", action="store_true", help="print the slowest imports otel-audit brings")
    args = parser.parse_args(argv)
    command = [_instrument(), sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as spool:
        audited_env, plain_env = _env(args.exporter, False, spool), _env(args.exporter, True, spool)
        _once(command, audited_env), _once(command, plain_env)  # warm the file cache
        audited, plain = [], []
        for _ in range(args.repeat):
            audited.append(_once(command, audited_env))
            plain.append(_once(command, plain_env))
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
    a, p = statistics.median(audited), statistics.median(plain)
    print(f"opentelemetry-instrument python -c pass, logs exporter {args.exporter}, median of {args.repeat} "
          f"(min-max):")
    print(f"  without otel-audit  {p:7.1f} ms  ({min(plain):.1f}-{max(plain):.1f})")
    print(f"  with otel-audit     {a:7.1f} ms  ({min(audited):.1f}-{max(audited):.1f})")
    print(f"  added               {a - p:+7.1f} ms  ({a / p:.2f}x; target <= +{TARGET_MS:.0f} ms: "
          f"{'met' if a - p <= TARGET_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
