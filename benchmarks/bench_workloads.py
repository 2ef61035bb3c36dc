#!/usr/bin/env python
"""Real workloads with and without otel-audit: the cost a training job sees.

Each workload runs in its own process under ``opentelemetry-instrument`` (durable delivery, the
default, over OTLP gRPC to a receiver in another process), once with otel-audit and once with it
disabled (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_audit``: the same SDK start), interleaved,
``--repeat`` times.  The process measures its own CPU (all threads) from the first access until the
shipper has delivered and acknowledged every record (``Shipper.shutdown``), so export is included.

``npy-small``    2,000 ``numpy.load`` of 16 KiB ``.npy`` files (target: <= 1.15x plain CPU)
``csv-small``    1,000 ``pandas.read_csv`` of 100-row CSV files (target: <= 1.15x)
``csv-1mb``      20 ``pandas.read_csv`` of a 1 MB CSV file (target: within 1 %)
``torch-100mb``  3 ``torch.load`` of a 100 MB state dict (target: within 1 %)
``dataloader``   a ``torch.utils.data.DataLoader`` with 2 workers over 5,000 16 KiB files, each sample
                 a ``numpy.load``: samples per second of wall time (target: audited >= 0.95x plain)

    .venv/bin/python benchmarks/bench_workloads.py            # --repeat 3, --workloads npy-small,csv-small
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WORKLOADS = ("npy-small", "csv-small", "csv-1mb", "torch-100mb", "dataloader")
TARGETS = {"npy-small": ("cpu", 1.15), "csv-small": ("cpu", 1.15), "csv-1mb": ("cpu", 1.01),
           "torch-100mb": ("cpu", 1.01), "dataloader": ("rate", 0.95)}


def make_files(directory: str, names: list[str]) -> None:
    """The files the chosen workloads read (made before any measured process starts)."""
    import numpy as np
    import pandas as pd

    arrays = 5000 if "dataloader" in names else 2000 if "npy-small" in names else 0
    os.makedirs(os.path.join(directory, "npy"))
    for n in range(arrays):
        np.save(os.path.join(directory, "npy", f"{n:05d}.npy"), np.full(16384 // 8 - 16, n, dtype=np.float64))
    os.makedirs(os.path.join(directory, "csv"))
    if "csv-small" in names:
        frame = pd.DataFrame({"id": range(100), "x": [i * 0.5 for i in range(100)], "label": ["a", "b"] * 50})
        for n in range(1000):
            frame.to_csv(os.path.join(directory, "csv", f"{n:04d}.csv"), index=False)
    if "csv-1mb" in names:
        big = pd.DataFrame({"id": range(40_000), "x": [i * 0.25 for i in range(40_000)], "label": ["abc"] * 40_000})
        big.to_csv(os.path.join(directory, "big.csv"), index=False)
    if "torch-100mb" in names:
        import torch

        torch.save({f"layer{n}.weight": torch.zeros(262_144) for n in range(100)},  # 100 x 1 MiB
                   os.path.join(directory, "model.pt"))


class _Samples:  # a map-style dataset of small .npy files (picklable for the spawn/fork workers)
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        import numpy as np

        return np.load(self.paths[index])


def run_workload(name: str, directory: str) -> dict:
    """In the measured process: the workload, timed from the first access to the last record delivered."""
    import numpy as np
    import pandas as pd
    import torch

    npy = sorted(os.path.join(directory, "npy", f) for f in os.listdir(os.path.join(directory, "npy")))
    csv = sorted(os.path.join(directory, "csv", f) for f in os.listdir(os.path.join(directory, "csv")))
    cpu, wall = time.process_time(), time.perf_counter()
    samples = 0
    if name == "npy-small":
        for path in npy[:2000]:
            np.load(path)
    elif name == "csv-small":
        for path in csv:
            pd.read_csv(path)
    elif name == "csv-1mb":
        for _ in range(20):
            pd.read_csv(os.path.join(directory, "big.csv"))
    elif name == "torch-100mb":
        for _ in range(3):
            torch.load(os.path.join(directory, "model.pt"))
    elif name == "dataloader":
        loader = torch.utils.data.DataLoader(_Samples(npy), batch_size=50, num_workers=2)
        for batch in loader:
            samples += len(batch)
    loop_wall = time.perf_counter() - wall
    from otel_audit.recorder import _default_recorder

    shipper = _default_recorder.shipper() if _default_recorder is not None else None
    if shipper is not None:
        shipper.shutdown()  # every record delivered and acknowledged (or the timeout said otherwise)
    return {"cpu": time.process_time() - cpu, "wall": loop_wall, "samples": samples}


def _child(name: str, directory: str, receiver_endpoint: str, audited: bool, spool: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(OTEL_SERVICE_NAME=f"bench-{name}", OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
               OTEL_EXPORTER_OTLP_ENDPOINT=receiver_endpoint, OTEL_EXPORTER_OTLP_INSECURE="true",
               OTEL_PYTHON_AUDIT_SPOOL_DIR=spool, OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="120")
    if not audited:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "otel_audit"
    instrument = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    result = subprocess.run([instrument, sys.executable, str(Path(__file__).resolve()), "--run", name,
                             "--dir", directory], env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"{name} ({'audited' if audited else 'plain'}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--run", choices=WORKLOADS, help=argparse.SUPPRESS)  # internal: the measured process
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(run_workload(args.run, args.dir)))
        return 0
    names = args.workloads.split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"--workloads: {', '.join(unknown)} unknown; accepted: {', '.join(WORKLOADS)}")
    from bench_access import ReceiverProcess

    directory = tempfile.mkdtemp(prefix="otel-audit-workloads-")
    try:
        make_files(directory, names)
        receiver = ReceiverProcess("grpc")
        try:
            rows = []
            for name in names:
                runs = {True: [], False: []}
                for repetition in range(args.repeat):
                    for audited in (False, True):
                        spool = os.path.join(directory, f"spool-{name}-{repetition}-{audited}")
                        runs[audited].append(_child(name, directory, receiver.endpoint, audited, spool))
                rows.append((name, runs))
        finally:
            receiver.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"real workloads under opentelemetry-instrument, durable delivery over OTLP gRPC, median of {args.repeat}:")
    print(f"  {'workload':<12} {'plain':>12} {'audited':>12} {'ratio':>8}  target")
    for name, runs in rows:
        kind, target = TARGETS[name]
        if kind == "cpu":
            plain = statistics.median(r["cpu"] for r in runs[False])
            audited = statistics.median(r["cpu"] for r in runs[True])
            ratio = audited / plain
            verdict = "met" if ratio <= target else "NOT met"
            print(f"  {name:<12} {plain:10.3f} s {audited:10.3f} s {ratio:7.3f}x  CPU <= {target:.2f}x: {verdict}")
        else:
            plain = statistics.median(r["samples"] / r["wall"] for r in runs[False])
            audited = statistics.median(r["samples"] / r["wall"] for r in runs[True])
            ratio = audited / plain
            verdict = "met" if ratio >= target else "NOT met"
            print(f"  {name:<12} {plain:8.0f} /s   {audited:8.0f} /s   {ratio:7.3f}x  samples/s >= {target:.2f}x: "
                  f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
