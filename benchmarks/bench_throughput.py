#!/usr/bin/env python
"""Sustained throughput of durable delivery: records per second delivered and acknowledged, from threads.

``--threads`` threads (default 8) each open, read and close ``--records / --threads`` different 4 KiB
files under the real ``open`` hook (each access one record), with the default durable delivery to an
OTLP receiver in another process (``bench_access.py --receiver``, gRPC or ``--protocol http/protobuf``).
The clock runs from the first access until the receiver holds every record and the shipper has
acknowledged them all.  Printed: records per second, the same for the bare accesses (the threads'
loop without otel-audit, measured first in the same run), the process's CPU per record, and resident
memory growth over the run (target issue 11: >= 100,000 records/s for 1,000,000 records from
8 threads, memory growing < 50 MiB).

    .venv/bin/python benchmarks/bench_throughput.py                # 1,000,000 records; --records 100000 to try
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FILES = 1000  # distinct files the threads cycle through (a data loader's shards)


def _rss_mib() -> float:
    with open("/proc/self/statm", "rb") as statm:  # before instrumenting, or excluded: not a record
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _run_threads(paths: list[str], threads: int, per_thread: int) -> float:
    def work(offset: int) -> None:
        for i in range(per_thread):
            with open(paths[(offset + i) % len(paths)], "rb") as f:
                f.read()

    workers = [threading.Thread(target=work, args=(n * 37,)) for n in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="grpc")
    args = parser.parse_args(argv)
    per_thread = args.records // args.threads
    total = per_thread * args.threads

    from bench_access import ReceiverProcess

    workdir = tempfile.mkdtemp(prefix="otel-audit-throughput-")
    paths = []
    for n in range(FILES):
        path = os.path.join(workdir, f"shard-{n:04d}.bin")
        with open(path, "wb") as out:
            out.write(os.urandom(4096))
        paths.append(path)
    bare_seconds = _run_threads(paths, args.threads, per_thread)

    receiver = ReceiverProcess(args.protocol)
    try:
        os.environ.update(OTEL_LOGS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL=args.protocol,
                          OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_INSECURE="true",
                          OTEL_SERVICE_NAME="bench-throughput")
        from otel_audit import AuditInstrumentor
        from otel_audit.config import AuditConfig

        config = dataclasses.replace(AuditConfig.from_env(), delivery="durable",
                                     spool_dir=os.path.join(workdir, "spool"), spool_max_bytes=8 << 30)
        rss_before = _rss_mib()
        cpu_before = time.process_time()
        start = time.perf_counter()
        instrumentor = AuditInstrumentor()
        instrumentor.instrument(config=config)
        accesses_seconds = _run_threads(paths, args.threads, per_thread)
        got = receiver.ask(f"wait {total} 3600")["records"]
        delivered_seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        rss_after = _rss_mib()
        instrumentor.uninstrument()
    finally:
        receiver.close()
    print(f"{total:,} records from {args.threads} threads, durable delivery over OTLP {args.protocol}:")
    print(f"  bare accesses        {total / bare_seconds:12,.0f} accesses/s")
    print(f"  audited accesses     {total / accesses_seconds:12,.0f} accesses/s (the threads' loop alone)")
    print(f"  delivered            {got / delivered_seconds:12,.0f} records/s, first access to the receiver "
          f"holding all {got:,} (target >= 100,000)")
    print(f"  process CPU          {cpu / total * 1e6:12.1f} µs per record")
    print(f"  resident memory      {rss_after - rss_before:+12.1f} MiB over the run (target < 50)")
    return 0 if got == total else 1


if __name__ == "__main__":
    sys.exit(main())
