#!/usr/bin/env python
"""Instructions per access on the calling thread, counted by ``valgrind --tool=callgrind``.

The CPU-time benchmarks (``bench_access.py``) are the headline, but this 2-core machine's timings
spread by 10-20 % from run to run, too much to see a change of a few percent.  Instruction counts
are repeatable to the instruction for the same interpreter, code and input, whatever else the
machine is doing, so two versions of the record path compare exactly.  They miss kernel time
(the ``write`` and ``fstat`` system calls), and cache misses: read them beside the CPU rows.

Each case runs ``python this.py --case CASE --n N`` under callgrind twice, with N = 0 and N = the
count asked for; the difference divided by N is the cost of one 4 KiB ``open`` + ``read`` +
``close`` of a ``.bin`` file, everything else (start-up, imports, the first record) cancelling out.
The shipper thread is not started (its work is another thread's, measured by ``bench_access.py``):

``bare``      nothing instrumented;
``excluded``  otel-audit instrumented, the file excluded (``exclude_paths``);
``durable``   audited, durable delivery: captured, encoded, written to the spool;
``policy50``  ``durable`` with an access policy of 50 rules, none matching (the most rules a decision
              can walk through, answered from the decision cache once warm);
``unchained`` ``durable`` without the chain (``AuditConfig(chain=False)``, in code only): what
              ``audit.chain.hash`` costs is ``durable`` minus this.

    .venv/bin/python benchmarks/bench_instructions.py            # all cases, N = 2000 (about 3 minutes)
    .venv/bin/python benchmarks/bench_instructions.py --cases bare,durable --n 500

Exit status: 0; 2 when valgrind is not installed or a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CASES = ("bare", "excluded", "durable", "policy50", "unchained")


def run_case(case: str, n: int) -> None:
    """The measured program: set up, warm up, then N accesses."""
    os.environ["OTEL_LOGS_EXPORTER"] = "none"
    directory = tempfile.mkdtemp(prefix="otel-audit-instructions-")
    path = os.path.join(directory, "data.bin")
    with open(path, "wb") as handle:
        handle.write(b"x" * 4096)
    if case != "bare":
        from otel_audit import AuditInstrumentor
        from otel_audit.config import AuditConfig
        from otel_audit.delivery import shipper

        shipper.Shipper._start = lambda self: setattr(self, "_started_pid", os.getpid())  # no shipper thread
        extra: dict = {}
        if case == "excluded":
            extra["exclude_paths"] = (path,)
        if case == "unchained":
            extra["chain"] = False
        if case == "policy50":
            rules = [{"id": f"r{i}", "effect": "deny", "match": {"resource": f"s3://bucket-{i}/pii/*",
                                                                   "user": f"intern-{i}-*", "action": "read"}}
                     for i in range(50)]
            extra["policy"] = os.path.join(directory, "policy.json")
            with open(extra["policy"], "w") as handle:
                json.dump({"default": "allow", "rules": rules}, handle)
        AuditInstrumentor().instrument(config=AuditConfig(
            delivery="durable", spool_dir=os.path.join(directory, "spool"), **extra))
    for _ in range(200 + n):  # 200 to warm the caches up, in both runs
        with open(path, "rb") as handle:
            handle.read()


def count(case: str, n: int) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--case", case, "--n", str(n)], capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected\s*:\s*(\d+)", result.stderr) or re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{case} (N={n}) failed: exit {result.returncode}\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # the measured child
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--n", type=int, default=2000, help="accesses counted (default 2000)")
    args = parser.parse_args(argv)
    if args.case:
        run_case(args.case, args.n)
        return 0
    if shutil.which("valgrind") is None:
        print("bench_instructions: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.n <= 0:
        parser.error(f"--cases accepts {', '.join(CASES)}; --n a positive count")
    print(f"instructions per access (callgrind, (I(N={args.n}) - I(N=0)) / {args.n}, calling thread's work, "
          f"python {sys.version.split()[0]})")
    per_access = {}
    try:
        for case in cases:
            per_access[case] = (count(case, args.n) - count(case, 0)) / args.n
            print(f"  {case:10s} {per_access[case]:10,.0f}", flush=True)
    except RuntimeError as exc:
        print(f"bench_instructions: {exc}", file=sys.stderr)
        return 2
    bare = per_access.get("bare")
    if bare:
        for case, value in per_access.items():
            if case != "bare":
                print(f"{case} / bare = {value / bare:.2f}×  (extra {value - bare:,.0f} instructions per access)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
