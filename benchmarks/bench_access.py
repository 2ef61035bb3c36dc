#!/usr/bin/env python
"""Whole-process CPU cost of one audited file access, export included.

Seven cases, each run in a fresh subprocess (``--case X``) so patches and SDK
state never leak from one to the next:

``bare``
    ``open(path, "rb")`` + ``read()`` + ``close()`` of a 4 KiB file, nothing
    instrumented: the baseline.
``audited``
    the same with otel-audit instrumented over the pipeline
    ``opentelemetry-instrument`` sets up for ``OTEL_LOGS_EXPORTER=otlp``:
    ``LoggerProvider`` + ``BatchLogRecordProcessor`` + ``OTLPLogExporter``
    (gRPC, or ``--protocol http/protobuf``), exporting to a local receiver.
    ``AuditConfig(delivery="memory")``: records go through that pipeline.
``spans``
    ``audited`` with audit spans on (``AuditConfig(spans=True)``,
    ``OTEL_PYTHON_AUDIT_SPANS``): each access is also a span, through an SDK
    ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP span exporter to the
    same receiver, which must get N records and N spans.
``durable``
    the same access, otel-audit instrumented with ``AuditConfig(delivery=
    "durable", spool_dir=<a fresh temp dir>, spool_fsync="batch")``: each
    record is encoded and appended to the spool segment on the hot path (before
    ``close()`` returns), and the ``Shipper`` thread reads it back and exports it
    through the exporters ``exporters_from_env()`` builds; the case process sets
    ``OTEL_LOGS_EXPORTER=otlp``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` and
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the local receiver, same protocol) before
    instrumenting.  The SDK pipeline of ``audited`` is set up as well (as
    ``opentelemetry-instrument`` would), but the durable path does not use it:
    its ``force_flush`` says nothing, so the clock stops only once the receiver
    has all N records (see below).
``durable_http``
    ``durable`` over OTLP HTTP/protobuf whatever ``--protocol`` says (its receiver
    is an HTTP one): with ``durable`` (gRPC by default), both OTLP transports in one run.
``durable_file``
    ``durable`` delivered to the ``audit_file`` sink (``OTEL_LOGS_EXPORTER=audit_file``,
    a fresh file): the clock stops once the shipper has every record acknowledged
    (it polls ``Shipper.pending()`` every 2 ms); the file is then read and must hold
    exactly the warm-up's and the N records.
``excluded``
    the same pipeline and instrumentation, but the file is excluded
    (``AuditConfig(exclude_paths=(path,))``): what an access otel-audit
    decides not to record costs.  Reported as the extra µs over ``bare``.
``stock``
    reference: bare access + one hand-written SDK ``Logger.emit`` per access
    with the attributes of an audit record (same keys, same value kinds;
    checked against the audited case's records), through the same
    ``BatchLogRecordProcessor`` + OTLP exporter.
``logging``
    reference: bare access + one stdlib ``logging`` line to a ``FileHandler``.

Cost = ``time.process_time()`` delta over N accesses divided by N: the CPU
time of the whole process, so the batch processor's worker thread, the
durable shipper thread (reading the spool back, fsync per shipment, ack files)
and the gRPC/HTTP client threads (encoding, sending) are counted.  Before the
clock is stopped every record has been exported: by ``force_flush`` for the
SDK pipeline cases; for ``durable`` by waiting until the receiver reports all N
records (the case process blocks on the receiver's ``wait`` answer, so waiting
costs it no CPU).  The receiver's count is then checked to be exactly N (0 for
``excluded``) and printed; for ``durable`` only after the shipper has recorded
its acknowledgements, so a redelivered (duplicate) batch would show as more
than N, and the number of distinct ``audit.record.id`` values is printed beside
it.

The hot path alone: ``time.thread_time()`` of the main thread around the N
accesses (no flush, no background thread) is recorded for every case, and a
second table shows it for ``bare``, ``audited`` (the in-memory path: the
record is queued for the batch processor) and ``durable`` (the record is
encoded and written to the spool), each over ``bare``.

The receiver (``tests/otlp_receiver.py``) runs in its own process
(``--receiver grpc|http``), started by each case process, so its decoding CPU
is not counted.  It talks over its stdin/stdout: ``count`` answers a JSON line
with the number of records received, the number of distinct
``audit.record.id`` values and the first record's attributes; ``wait K T``
answers with the count once at least K records arrived (or T seconds passed);
``reset`` forgets what it received; EOF stops it.

Each case runs ``--repeat`` times, interleaved (bare, audited, spans,
durable, excluded, stock, logging, bare, ...), so slow drift on the machine hits every
case alike.  The
table shows the MEDIAN of the repetitions as the headline: the exported cases
include a background thread whose batching (and so its cost) varies from run
to run, and the median is the typical cost, robust to a run disturbed by
another process, whereas the min would report the luckiest batching.  The min
and max are shown beside it for the spread.

``excluded extra`` is a difference of a few µs between two ~10 µs costs, which
the noise of separate processes on a shared 2-core machine swamps when taken
from whole-run medians.  Both cases are deterministic work on the main thread
with nothing deferred (no record is exported), so their runs are also timed
in ``BLOCKS`` blocks and the line uses the MIN block of each (as ``timeit``
does: interference only ever adds CPU time, so the least-disturbed block is
the best estimate of the work itself).  The median-based figure is printed
beside it.

No timing is asserted: the script prints.  It exits non-zero only if a case
failed or a record count is wrong (a correctness check; for ``durable`` the
count must be exactly N too, duplicates included, and no record may have
fallen back from the spool to the in-memory pipeline).

    python benchmarks/bench_access.py                 # N=20000, 5 repetitions
    python benchmarks/bench_access.py --protocol http/protobuf
    python benchmarks/bench_access.py --quick         # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = ("bare", "audited", "spans", "durable", "durable_http", "durable_file", "excluded", "stock", "logging")
DURABLE_CASES = ("durable", "durable_http", "durable_file")
EXPORTING_CASES = ("audited", "spans", *DURABLE_CASES, "excluded", "stock")
HOT_PATH_CASES = ("bare", "audited", "spans", "durable")  # the main-thread-only table
DELIVERY_TIMEOUT = 120.0  # seconds for every record to reach the receiver (force_flush's, or the durable wait)
FILE_SIZE = 4096
BLOCKS = 20


# --------------------------------------------------------------------------
# The receiver process
# --------------------------------------------------------------------------
OWN_EVENT_NAMES = ("audit.lifecycle", "audit.checkpoint")  # otel-audit's own records ("started", checkpoints): not counted


def _access_records(scope_logs) -> list:
    return [log for log in scope_logs.log_records if log.event_name not in OWN_EVENT_NAMES]


def _record_count(request_list) -> int:
    return sum(
        len(_access_records(scope_logs))
        for request in request_list
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
    )


def _distinct_record_ids(request_list) -> int:
    """Distinct ``audit.record.id`` values (a redelivered copy carries its original's id)."""
    ids = set()
    for request in request_list:
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for log in _access_records(scope_logs):
                    for kv in log.attributes:
                        if kv.key == "audit.record.id":
                            ids.add(kv.value.string_value)
                            break
    return len(ids)


def _attribute_summary(request_list) -> tuple[int, dict]:
    """(number of log records, {key: [kind, value]} of the first record)."""
    count = 0
    first = None
    for request in request_list:
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                records = _access_records(scope_logs)
                count += len(records)
                if first is None and records:
                    first = records[0]
    summary = {}
    if first is not None:
        for kv in first.attributes:
            kind = kv.value.WhichOneof("value")
            summary[kv.key] = [kind, getattr(kv.value, kind) if kind in ("string_value", "int_value") else None]
    return count, summary


def serve_receiver(protocol: str) -> int:
    """``--receiver``: run an OTLP logs receiver, answer ``count``/``wait``/``reset`` on stdin, stop on EOF."""
    sys.path.insert(0, str(REPO / "tests"))
    from otlp_receiver import GrpcLogsReceiver, HttpLogsReceiver

    receiver = (GrpcLogsReceiver() if protocol == "grpc" else HttpLogsReceiver()).start()
    print(json.dumps({"endpoint": receiver.endpoint}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                with receiver._lock:
                    requests = list(receiver.requests)
                    spans = sum(len(scope_spans.spans) for request in receiver.trace_requests
                                for resource_spans in request.resource_spans
                                for scope_spans in resource_spans.scope_spans)
                count, first = _attribute_summary(requests)
                distinct = _distinct_record_ids(requests)
                print(json.dumps({"records": count, "distinct_ids": distinct, "first": first, "spans": spans}),
                      flush=True)
            elif command.startswith("wait "):
                _, want, timeout = command.split()
                deadline = time.monotonic() + float(timeout)
                with receiver._changed:  # notified on every request the receiver adds
                    while (count := _record_count(receiver.requests)) < int(want):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        receiver._changed.wait(left)
                print(json.dumps({"records": count}), flush=True)
            elif command == "reset":
                receiver.clear()
                print(json.dumps({"records": 0}), flush=True)
    finally:
        receiver.stop()
    return 0


class ReceiverProcess:
    """A receiver in its own process, so its CPU is not the measured process's."""

    def __init__(self, protocol: str):
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--receiver", "grpc" if protocol == "grpc" else "http"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.endpoint = self._reply()["endpoint"]

    def _reply(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the receiver process ended (exit {self._process.poll()})")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        try:
            self._process.stdin.close()
            self._process.wait(timeout=10)
        except Exception:
            self._process.kill()
            self._process.wait()


# --------------------------------------------------------------------------
# The measured process: one case
# --------------------------------------------------------------------------
_OTLP_EXPORTERS = {  # (signal, protocol) -> (module, class): what OTEL_*_EXPORTER=otlp loads
    ("logs", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    ("logs", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
    ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
}


def _otlp_exporter(signal: str, protocol: str, endpoint: str):
    module, name = _OTLP_EXPORTERS[signal, protocol]
    exporter_class = getattr(importlib.import_module(module), name)
    if protocol == "grpc":
        return exporter_class(endpoint=endpoint, insecure=True)
    return exporter_class(endpoint=f"{endpoint}/v1/{signal}")


def _sdk_pipeline(protocol: str, endpoint: str):
    """What ``opentelemetry-instrument`` builds for ``OTEL_LOGS_EXPORTER=otlp`` (BLRP settings from OTEL_BLRP_*)."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "otel-audit-bench"}))
    # A queue that holds a whole run: with the default 2048 a producer faster than the export thread
    # (the stock reference on a busy machine) drops records, and dropped records cost no export CPU,
    # which would flatter it.  Every case on this pipeline gets the same queue.
    provider.add_log_record_processor(BatchLogRecordProcessor(_otlp_exporter("logs", protocol, endpoint),
                                                              max_queue_size=1 << 16))
    set_logger_provider(provider)
    return provider


def _span_pipeline(protocol: str, endpoint: str):
    """What ``opentelemetry-instrument`` builds for ``OTEL_TRACES_EXPORTER=otlp``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-audit-bench"}))
    provider.add_span_processor(BatchSpanProcessor(_otlp_exporter("traces", protocol, endpoint)))
    return provider


def _access(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def run_case(case: str, n: int, warmup: int, path: str, protocol: str) -> dict:
    result: dict = {"case": case, "n": n, "errors": [], "_warmup": warmup}
    provider = tracer_provider = shipper = spool_dir = None
    if case == "durable_http":
        protocol = "http/protobuf"
    receiver = ReceiverProcess(protocol) if case in EXPORTING_CASES else None
    try:
        step = _prepare(case, path, protocol, receiver, result)
        provider = result.pop("_provider", None)
        tracer_provider = result.pop("_tracer_provider", None)
        shipper, spool_dir = result.pop("_shipper", None), result.pop("_spool_dir", None)
        flush = result.pop("_flush")  # flush(emitted): True once every record emitted since the last reset is out
        for _ in range(warmup):
            step()
        if flush(warmup) is False:
            result["errors"].append("the warm-up records were not all delivered")
        if receiver is not None:
            receiver.ask("reset")

        # The N accesses run in BLOCKS timed blocks as well: for the cases with no
        # deferred work (bare, excluded, logging) a block's CPU is that of its
        # accesses, which lets the excluded-vs-bare difference use the least
        # disturbed blocks.  The run's cost is the whole delta, flush included.
        blocks = []
        per_block = max(1, n // BLOCKS)
        wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        done, block_start = 0, cpu0
        while done < n:
            count = min(per_block, n - done)
            for _ in range(count):
                step()
            block_end = time.process_time()
            blocks.append((block_end - block_start) / count)
            done, block_start = done + count, block_end
        thread1 = time.thread_time()  # the main thread's accesses alone: the hot path
        flushed = flush(n)  # every record exported (or written) before the clock stops
        cpu1, wall1 = time.process_time(), time.perf_counter()

        result["cpu_s"] = cpu1 - cpu0
        result["thread_cpu_s"] = thread1 - thread0
        result["block_cpu_s"] = blocks
        result["wall_s"] = wall1 - wall0
        if flushed is False:
            result["errors"].append(
                "every record was not delivered in time" if case in DURABLE_CASES else "force_flush did not complete")
        if shipper is not None:
            # Let the shipper record its acknowledgements (after the clock): a batch it had to
            # send again would then be at the receiver too, and show as more than N.
            deadline = time.monotonic() + 30
            while shipper.pending() and time.monotonic() < deadline:
                time.sleep(0.01)
        _check(case, n, path, receiver, result)
    finally:
        if shipper is not None:
            shipper.shutdown()  # its atexit hook then has nothing to do
        for sdk_provider in (provider, tracer_provider):
            if sdk_provider is not None:
                sdk_provider.shutdown()  # the client goes before the receiver does (no GOAWAY noise)
        if receiver is not None:
            receiver.close()
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)
    return result


def _prepare(case: str, path: str, protocol: str, receiver, result: dict):
    """The per-access function of ``case``; stores its flush in ``result['_flush']``."""
    if case == "bare":
        result["_flush"] = lambda emitted: True
        return lambda: _access(path)

    if case == "logging":
        import logging

        log_path = path + ".log"
        handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger("bench.access")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        result["_log_path"] = log_path
        result["_handler"] = handler

        def logged() -> None:
            data = _access(path)
            logger.info("read data %s (%d bytes) via builtins.open (success)", path, len(data))

        def flush_and_truncate_after_warmup(emitted: int) -> bool:
            handler.flush()
            if "_warmed" not in result:  # the warm-up lines are not counted
                result["_warmed"] = True
                handler.stream.seek(0)
                handler.stream.truncate()
            return True

        result["_flush"] = flush_and_truncate_after_warmup
        return logged

    provider = result["_provider"] = _sdk_pipeline(protocol, receiver.endpoint)
    result["_flush"] = lambda emitted: provider.force_flush(timeout_millis=int(DELIVERY_TIMEOUT * 1000))

    if case in ("audited", "spans", "excluded"):
        from otel_audit import AuditInstrumentor
        from otel_audit.config import AuditConfig

        # delivery="memory": records go through the SDK pipeline above, like the stock case.
        config = AuditConfig(exclude_paths=(path,) if case == "excluded" else (), delivery="memory",
                             spans=case == "spans")
        tracer_provider = None
        if case == "spans":
            tracer_provider = result["_tracer_provider"] = _span_pipeline(protocol, receiver.endpoint)
            timeout_ms = int(DELIVERY_TIMEOUT * 1000)
            result["_flush"] = lambda emitted: (provider.force_flush(timeout_millis=timeout_ms)
                                                and tracer_provider.force_flush(timeout_millis=timeout_ms))
        AuditInstrumentor().instrument(logger_provider=provider, tracer_provider=tracer_provider, config=config)
        return lambda: _access(path)

    if case in DURABLE_CASES:
        from otel_audit import AuditInstrumentor
        from otel_audit.config import AuditConfig
        from otel_audit.recorder import default_recorder

        if case == "durable_file":
            trail = result["_trail"] = os.path.join(tempfile.mkdtemp(prefix="otel-audit-bench-trail-"), "trail.jsonl")
            os.environ["OTEL_LOGS_EXPORTER"] = "audit_file"
            os.environ["OTEL_PYTHON_AUDIT_FILE"] = trail
        else:
            # What the shipper's exporters_from_env() reads: the same receiver, the same protocol.
            os.environ["OTEL_LOGS_EXPORTER"] = "otlp"
            os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        spool_dir = result["_spool_dir"] = tempfile.mkdtemp(prefix="otel-audit-bench-spool-")
        config = AuditConfig(delivery="durable", spool_dir=spool_dir, spool_fsync="batch")
        AuditInstrumentor().instrument(logger_provider=provider, config=config)
        recorder = result["_recorder"] = default_recorder()
        result["_shipper"] = recorder.shipper()
        if result["_shipper"] is None:
            raise RuntimeError("delivery='durable' gave the recorder no shipper")

        def delivered(emitted: int) -> bool:
            # The SDK provider's force_flush would not wait for the spool: block until the
            # receiver has every record (the answer comes when it does; no CPU spent polling).
            return receiver.ask(f"wait {emitted} {DELIVERY_TIMEOUT}")["records"] >= emitted

        def written(emitted: int) -> bool:
            # every record in the file once the shipper has acknowledged all it spooled
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while shipper.pending():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
            return True

        shipper = result["_shipper"]
        result["_flush"] = written if case == "durable_file" else delivered
        return lambda: _access(path)

    # stock: a hand-written SDK log record per access, with an audit record's attributes
    import getpass

    from opentelemetry._logs import SeverityNumber
    from otel_audit.resources import file_uri

    logger = provider.get_logger("bench.stock", "1.0", attributes={"audit.schema.version": "1"})
    user, uid, pid = getpass.getuser(), str(os.getuid()), os.getpid()
    uri = file_uri(path)
    body = f"{user} read data {uri} via builtins.open (success)"
    code_file = str(Path(__file__).resolve())
    seq = iter(range(1, 1 << 62))
    record_id_prefix = uuid.uuid4().hex
    chain_hash = "0" * 64

    def stock() -> None:
        start_ns = time.time_ns()
        data = _access(path)
        logger.emit(
            timestamp=start_ns,
            observed_timestamp=time.time_ns(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=body,
            attributes={
                "audit.resource.uri": uri,
                "audit.resource.type": "data",
                "file.path": path,
                "audit.mode": "rb",
                "audit.action": "read",
                "audit.api": "builtins.open",
                "code.file.path": code_file,
                "code.line.number": 0,
                "code.function.name": "stock",
                "file.size": len(data),
                "audit.outcome": "success",
                "user.name": user,
                "user.id": uid,
                "process.pid": pid,
                "audit.seq": (n := next(seq)),
                "audit.record.id": f"{record_id_prefix}-{n}",
                "audit.chain.hash": chain_hash,  # (a constant of the same size: the SDK's cost, not the chain's)
            },
            event_name="audit.access",
        )

    return stock


def _check(case: str, n: int, path: str, receiver, result: dict) -> None:
    """Record counts: exactly what was emitted, no more, no less."""
    errors = result["errors"]
    if case == "bare":
        result["expected"], result["exported"] = 0, 0
        return
    if case == "logging":
        result.pop("_handler").close()
        with open(result.pop("_log_path"), encoding="utf-8") as stream:
            lines = sum(1 for _ in stream)
        result["expected"], result["exported"] = n, lines
        if lines != n:
            errors.append(f"{lines} log lines written, expected {n}")
        return

    if case == "durable_file":
        expected = result.pop("_warmup") + n  # the file has the warm-up's records too
        received, first = _file_records(result.pop("_trail"))
        reply = {"records": len(received), "distinct_ids": len(set(received)), "first": first}
    else:
        expected = 0 if case == "excluded" else n
        reply = receiver.ask("count")
    result["expected"], result["exported"] = expected, reply["records"]
    result["distinct_ids"] = reply["distinct_ids"]
    if reply["records"] != expected:
        duplicates = ""
        if reply["records"] > expected:
            duplicates = (f" ({reply['distinct_ids']} distinct audit.record.id: "
                          + ("redelivered duplicates)" if reply["distinct_ids"] == expected else "not duplicates alone)"))
        errors.append(f"{'the file holds' if case == 'durable_file' else 'the receiver got'} {reply['records']} "
                      f"records, expected {expected}{duplicates}")
    if case in ("audited", "spans", *DURABLE_CASES, "stock"):
        result["attributes"] = {key: kind for key, (kind, _value) in reply["first"].items()}
    if case == "spans":
        result["spans"] = reply["spans"]
        if reply["spans"] != n:
            errors.append(f"the receiver got {reply['spans']} spans, expected {n}")
    if case in ("audited", "spans", *DURABLE_CASES) and reply["first"].get("file.path", [None, None])[1] != path:
        errors.append(f"the first {case} record is not the benchmark file's: {reply['first']}")
    if case in DURABLE_CASES:
        recorder = result.pop("_recorder")
        result["not_spooled"] = recorder.lost
        if recorder.lost:
            errors.append(f"{recorder.lost} records could not be spooled (sent through the in-memory pipeline)")
    if case == "excluded":
        # Prove auditing was on: one access to a file that is not excluded is recorded.
        other = path + ".not-excluded"
        with open(other, "wb") as stream:
            stream.write(b"x")
        from opentelemetry._logs import get_logger_provider

        get_logger_provider().force_flush(timeout_millis=60_000)
        sanity = receiver.ask("count")
        result["sanity_records"] = sanity["records"]
        if sanity["records"] != 1:
            errors.append(f"auditing was not active: a non-excluded access gave {sanity['records']} records, expected 1")


# OTLP/JSON's value keys, as the protobuf oneof names the receiver reports
_JSON_KINDS = {"stringValue": "string_value", "intValue": "int_value", "boolValue": "bool_value",
               "doubleValue": "double_value", "arrayValue": "array_value", "kvlistValue": "kvlist_value",
               "bytesValue": "bytes_value"}


def _file_records(trail: str) -> tuple[list[str], dict]:
    """The ``audit.record.id`` of every access record in an ``audit_file`` trail, and the first one's
    attributes as the receiver reports them (key -> (kind, value))."""
    from otel_audit.context import in_audited_call

    ids, first = [], None
    token = in_audited_call.set(True)  # reading the trail is not an access to record in it
    try:
        with open(trail, encoding="utf-8") as stream:
            lines = stream.readlines()
    finally:
        in_audited_call.reset(token)
    for line in lines:
        for resource_logs in json.loads(line)["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                for log in scope_logs["logRecords"]:
                    if log.get("eventName") in OWN_EVENT_NAMES:
                        continue
                    attributes = {}
                    for kv in log["attributes"]:
                        (json_kind, value), = kv["value"].items()
                        attributes[kv["key"]] = (_JSON_KINDS.get(json_kind, json_kind), value)
                    ids.append(attributes["audit.record.id"][1])
                    first = first or attributes
    shutil.rmtree(os.path.dirname(trail), ignore_errors=True)
    return ids, first or {}


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------
def _run_child(case: str, args, path: str) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--case", case,
        "-n", str(args.n), "--warmup", str(args.warmup), "--file", path, "--protocol", args.protocol,
    ]
    # Nothing inherited that steers OpenTelemetry or otel-audit, except the BLRP knobs (documented).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") or k.startswith("OTEL_BLRP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "errors": [f"timed out after {args.timeout} s"]}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"case": case, "errors": [f"exit {done.returncode}: {done.stderr.strip()[-2000:]}"]}
    result = json.loads(lines[-1])
    if done.stderr.strip():
        result.setdefault("stderr", done.stderr.strip()[-2000:])
    return result


def drive(args) -> int:
    started = time.perf_counter()
    cases = args.cases.split(",") if args.cases else list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown or "bare" not in cases:
        print(f"--cases: must include bare, from {', '.join(CASES)}; got {args.cases}", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-") as tmp:
        path = os.path.join(os.path.realpath(tmp), "data.bin")
        with open(path, "wb") as stream:
            stream.write(os.urandom(FILE_SIZE))
        print(
            f"otel-audit access benchmark: N={args.n} accesses of a {FILE_SIZE}-byte file per run, "
            f"{args.repeat} repetition(s) per case, OTLP {args.protocol}, python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPU(s)",
            flush=True,
        )
        for rep in range(args.repeat):
            for case in cases:
                result = _run_child(case, args, path)
                runs[case].append(result)
                for error in result.get("errors", []):
                    failures.append(f"{case} (repetition {rep + 1}): {error}")
                if "stderr" in result and not result.get("errors"):
                    print(f"  note: {case} (repetition {rep + 1}) wrote to stderr: {result['stderr'][:500]}", file=sys.stderr)
            print(f"  repetition {rep + 1}/{args.repeat} done", file=sys.stderr, flush=True)

    print()
    print("exported records (checked against the receiver after force_flush, or for durable once the receiver has them all"
          " and the shipper has its acks, before the result is accepted):")
    for case in cases:
        if case == "bare":
            continue
        counts = [f"{r.get('exported', '?')}/{r.get('expected', '?')}" for r in runs[case]]
        where = {"logging": "log lines in the file", "durable_file": "records in the file, warm-up's included"}.get(
            case, "records at the receiver")
        extra = ""
        if case == "excluded":
            extra = f"; non-excluded sanity access recorded: {[r.get('sanity_records', '?') for r in runs[case]]}"
        if case == "spans":
            extra = f"; spans at the receiver: {[r.get('spans', '?') for r in runs[case]]}"
        if case in DURABLE_CASES:
            extra = (f"; distinct audit.record.id: {[r.get('distinct_ids', '?') for r in runs[case]]}"
                     f"; not spooled: {[r.get('not_spooled', '?') for r in runs[case]]}")
        print(f"  {case:9s} exported {', '.join(counts)} ({where}){extra}")
    audited_kinds = next((r["attributes"] for r in runs.get("audited", []) if "attributes" in r), None)
    stock_kinds = next((r["attributes"] for r in runs.get("stock", []) if "attributes" in r), None)

    if audited_kinds is not None and stock_kinds is not None:
        if sorted(audited_kinds.items()) == sorted(stock_kinds.items()):
            print(f"  stock records carry the same {len(stock_kinds)} attributes (keys and value kinds) as audit records")
        else:
            failures.append(f"stock attributes {stock_kinds} differ from audited {audited_kinds}")
    for case in DURABLE_CASES:
        durable_kinds = next((r["attributes"] for r in runs.get(case, []) if "attributes" in r), None)
        if audited_kinds is None or durable_kinds is None:
            continue
        if sorted(audited_kinds.items()) == sorted(durable_kinds.items()):
            print(f"  {case} records carry the same {len(durable_kinds)} attributes (keys and value kinds) as "
                  "in-memory ones")
        else:
            failures.append(f"{case} attributes {durable_kinds} differ from audited {audited_kinds}")

    us = {
        case: [r["cpu_s"] / r["n"] * 1e6 for r in results if "cpu_s" in r and not r.get("errors")]
        for case, results in runs.items()
    }
    if failures or any(not v for v in us.values()):
        print("\nFAILED:", file=sys.stderr)
        for failure in failures or ["a case produced no measurement"]:
            print(f"  {failure}", file=sys.stderr)
        return 1

    bare = statistics.median(us["bare"])
    wall = {case: statistics.median(r["wall_s"] for r in runs[case]) for case in cases}
    print()
    print("whole-process CPU per access (time.process_time; median of repetitions, min..max beside it;"
          " wall = median seconds of a run, delivery included):")
    print(f"  {'case':10s} {'CPU µs/access':>14s} {'ratio to bare':>14s} {'min..max µs':>18s} {'wall s':>8s}")
    for case in cases:
        median = statistics.median(us[case])
        print(f"  {case:10s} {median:14.2f} {median / bare:13.2f}× {min(us[case]):8.2f}..{max(us[case]):<8.2f} "
              f"{wall[case]:8.3f}")
    print()
    if "audited" in us:
        audited = statistics.median(us["audited"])
        print(f"audited / bare = {audited / bare:.2f}× (in-memory delivery; the target is durable's)")
        print(f"  (audited extra = {audited - bare:.2f} µs per access over bare)")
    if "spans" in us:
        spans = statistics.median(us["spans"])
        print(f"spans / bare = {spans / bare:.2f}× (in-memory records plus one exported span per access)")
        if "audited" in us:
            print(f"  (a span adds {spans - statistics.median(us['audited']):.2f} µs per access to audited)")
    for case, how in (("durable", f"OTLP {args.protocol}"), ("durable_http", "OTLP http/protobuf"),
                      ("durable_file", "the audit_file sink")):
        if case in us:
            durable = statistics.median(us[case])
            print(f"{case} / bare = {durable / bare:.2f}×: extra {durable / bare - 1:.2f}× bare (target: extra ≤ 1.0×; "
                  f"spool write + shipping over {how}, until every record is delivered)")
            print(f"  ({case} extra = {durable - bare:.2f} µs per access over bare)")
    if "excluded" in us:
        block_us = {
            case: [b * 1e6 for r in runs[case] for b in r.get("block_cpu_s", [])] for case in ("bare", "excluded")
        }
        best_bare, best_excluded = min(block_us["bare"]), min(block_us["excluded"])
        median_extra = statistics.median(us["excluded"]) - bare
        print(f"excluded extra = {best_excluded - best_bare:.2f} µs (target ≤ 0.5 µs)")
        print(
            f"  (min over {len(block_us['excluded'])} blocks of {max(1, args.n // BLOCKS)} accesses: excluded "
            f"{best_excluded:.2f} - bare {best_bare:.2f} µs; from the medians of whole runs: {median_extra:.2f} µs)"
        )
    hot_cases = [case for case in HOT_PATH_CASES if case in cases]
    if len(hot_cases) > 1:
        thread_us = {case: [r["thread_cpu_s"] / r["n"] * 1e6 for r in runs[case]] for case in hot_cases}
        hot_bare = statistics.median(thread_us["bare"])
        print()
        print("the hot path alone: main-thread CPU per access (time.thread_time around the N accesses, no flush,"
              " no background thread; median, min..max beside it):")
        print(f"  {'case':10s} {'main µs/access':>15s} {'ratio to bare':>14s} {'extra µs':>9s} {'min..max µs':>18s}")
        for case in hot_cases:
            median = statistics.median(thread_us[case])
            print(f"  {case:10s} {median:15.2f} {median / hot_bare:13.2f}× {median - hot_bare:9.2f} "
                  f"{min(thread_us[case]):8.2f}..{max(thread_us[case]):<8.2f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=None, help="accesses per run (default 20000; 1000 with --quick)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case (default 5; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured accesses first (default 500; 100 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small N, one repetition")
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="grpc")
    parser.add_argument("--cases", default=None, help=f"comma-separated subset of {','.join(CASES)} (bare required)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per case run")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: run one case
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--receiver", choices=("grpc", "http"), help=argparse.SUPPRESS)  # internal: the receiver
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 1000 if args.quick else 20_000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.warmup is None:
        args.warmup = 100 if args.quick else 500

    if args.receiver:
        return serve_receiver(args.receiver)
    if args.case:
        result = run_case(args.case, args.n, args.warmup, args.file, args.protocol)
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
