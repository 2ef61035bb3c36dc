"""Durable delivery: real processes under `opentelemetry-instrument`, a real OTLP receiver, real faults.

Every record must arrive at least once; (service.instance.id, audit.seq) tells duplicates apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN, flush_spool, otlp_env, records_from_jsonl, run_instrumented
from otlp_receiver import GrpcLogsReceiver, HttpLogsReceiver
from otel_audit import schema


def _identities(records) -> list[tuple[str, int]]:
    return [(r["resource"]["service.instance.id"], r["attributes"][schema.AUDIT_SEQ]) for r in records
            if r["event_name"] == schema.EVENT_NAME]


def _assert_each_once_at_least(records, expected_count: int) -> set:
    """``expected_count`` distinct accesses, and no gap in any process's sequence: nothing lost.  ``records``
    are the accesses (their sequence then starts at 2, after "started"), or every record (from 1)."""
    ids = {(r["resource"]["service.instance.id"], r["attributes"][schema.AUDIT_SEQ]) for r in records
           if r["event_name"] == schema.EVENT_NAME}
    assert len(ids) == expected_count, f"{len(ids)} distinct records of {expected_count}"
    everything = any(r["event_name"] != schema.EVENT_NAME for r in records)
    by_instance: dict[str, list[int]] = {}
    for instance, seq in {(r["resource"]["service.instance.id"], r["attributes"][schema.AUDIT_SEQ]) for r in records}:
        by_instance.setdefault(instance, []).append(seq)
    for seqs in by_instance.values():
        first = 1 if everything else 2
        assert sorted(seqs) == list(range(first, len(seqs) + first))
    return ids


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(body))
    return script


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Nobody:
    """An endpoint where no collector listens (yet)."""

    def __init__(self, port: int):
        self.endpoint = f"http://127.0.0.1:{port}"




WRITE_50 = """
    import sys
    for i in range(50):
        with open(f"data-{i}.txt", "w") as handle:
            handle.write("x")
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_then_flush_delivers_everything(tmp_path, protocol):
    port = _free_port()
    spool = tmp_path / "spool"
    receiver_class = GrpcLogsReceiver if protocol == "grpc" else HttpLogsReceiver
    env = otlp_env(Nobody(port), protocol, OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool),
                   OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="1", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    # nothing listens on the port: the collector is down for the whole run and at exit
    result = run_instrumented(_script(tmp_path, WRITE_50), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "stay in the spool" in result.stderr
    assert list(spool.rglob("*.seg")), "nothing was spooled"

    receiver = receiver_class(port).start()
    try:
        flushed = flush_spool(env, spool)
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        assert "52 records delivered" in flushed.stdout  # the accesses, "started" and the closing checkpoint
        _assert_each_once_at_least(receiver.records(), 50)
        assert not list(spool.rglob("*.seg")) and not list(spool.rglob("*.ack"))
        again = flush_spool(env, spool)
        assert again.returncode == 0 and "0 records delivered" in again.stdout
    finally:
        receiver.stop()


def _run_while_collector_down(tmp_path: Path, script: str = WRITE_50, **settings: str):
    """Run ``script`` with nothing listening where the collector should be: (port, spool, env, result)."""
    port = _free_port()
    spool = tmp_path / "spool"
    env = otlp_env(Nobody(port), "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool), OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="0",
                   OTEL_EXPORTER_OTLP_TIMEOUT="1", **settings)
    result = run_instrumented(_script(tmp_path, script), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return port, spool, env, result


def test_flush_fails_with_a_count_while_the_collector_is_down(tmp_path):
    _, spool, env, _ = _run_while_collector_down(tmp_path)
    flushed = flush_spool(env, spool)
    assert flushed.returncode == 1
    assert "52 records NOT delivered" in flushed.stderr  # the accesses, "started" and the closing checkpoint
    assert len(list(spool.rglob("*.seg"))) == 1


def test_flush_without_an_exporter_counts_every_record_left(tmp_path):
    _, spool, env, _ = _run_while_collector_down(tmp_path)
    flushed = flush_spool({**env, "OTEL_LOGS_EXPORTER": "none"}, spool)
    assert flushed.returncode == 1
    assert "52 records NOT delivered" in flushed.stderr  # the accesses, "started" and the closing checkpoint
    assert len(list(spool.rglob("*.seg"))) == 1


def test_sigkill_right_after_the_accesses(tmp_path, grpc_receiver):
    spool = tmp_path / "spool"
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    script = _script(tmp_path, WRITE_50 + """
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == -9
    flushed = flush_spool(env, spool)
    assert flushed.returncode == 0, flushed.stderr
    _assert_each_once_at_least(grpc_receiver.records(), 50)


def test_the_next_process_of_the_service_delivers_leftovers(tmp_path):
    port, spool, env, _ = _run_while_collector_down(tmp_path)
    receiver = GrpcLogsReceiver(port).start()
    try:
        second = _script(tmp_path, "open('one-more.txt', 'w').close()\n")
        # (the first ran with SHUTDOWN_TIMEOUT=0, leaving its records; this one waits for its own at exit)
        assert run_instrumented(second, cwd=tmp_path, env={**env, "OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT": "30"}).returncode == 0
        records = receiver.records()
        assert len(set(r["resource"]["service.instance.id"] for r in records)) == 2
        _assert_each_once_at_least(records, 51)
    finally:
        receiver.stop()


def test_receiver_outage_mid_run(tmp_path):
    port = _free_port()
    spool = tmp_path / "spool"
    receiver = GrpcLogsReceiver(port).start()
    env = otlp_env(receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool), OTEL_EXPORTER_OTLP_TIMEOUT="1",
                   OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="30")
    script = _script(tmp_path, """
    import time
    for i in range(60):
        open(f"file-{i}.txt", "w").close()
        time.sleep(0.1)
    """)
    process = subprocess.Popen([str(BIN / "opentelemetry-instrument"), sys.executable, str(script)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver.wait_for(5, timeout=30)
        receiver.stop()  # the collector goes away for a few seconds mid-run
        before = receiver.records()
        time.sleep(3)
        receiver = GrpcLogsReceiver(port).start()
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        _assert_each_once_at_least(before + receiver.records(), 60)
    finally:
        process.kill()
        receiver.stop()


def test_dataloader_fork_workers(tmp_path, grpc_receiver):
    pytest.importorskip("torch")
    spool = tmp_path / "spool"
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(200):
        (data / f"{i}.txt").write_text(str(i))
    script = _script(tmp_path, f"""
    import os
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Files(Dataset):
        def __len__(self):
            return 200
        def __getitem__(self, i):
            with open(os.path.join({str(data)!r}, f"{{i}}.txt")) as handle:
                return int(handle.read())

    if __name__ == "__main__":
        loader = DataLoader(Files(), batch_size=10, num_workers=2, multiprocessing_context="fork")
        print(sum(int(batch.sum()) for batch in loader))
    """)
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sum(range(200)))
    flushed = flush_spool(env, spool)  # whatever a worker's exit left behind
    assert flushed.returncode == 0, flushed.stderr
    records = [r for r in grpc_receiver.records() if r["attributes"][schema.AUDIT_RESOURCE_URI].startswith(data.as_uri())]
    uris = {r["attributes"][schema.AUDIT_RESOURCE_URI] for r in records}
    assert uris == {(data / f"{i}.txt").as_uri() for i in range(200)}
    pids = {r["attributes"][schema.PROCESS_PID] for r in records}
    assert len(pids) == 2 and os.getpid() not in pids  # the two workers' own pids
    assert len(records) == len(set(_identities(records))) == 200  # each exactly once: no fork duplicates
    instances = {r["resource"]["service.instance.id"] for r in records}
    assert len(instances) == 2  # a fresh service.instance.id per worker


def test_many_threads_slow_receiver_every_record_arrives_memory_bounded(tmp_path):
    receiver = GrpcLogsReceiver(delay=0.05).start()
    spool = tmp_path / "spool"
    env = otlp_env(receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool), OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="120")
    job = """
    import resource, sys, threading
    threads, per_thread = int(sys.argv[1]), int(sys.argv[2])
    open("shared.txt", "w").close()
    def work():
        for _ in range(per_thread):
            with open("shared.txt") as handle:
                handle.read()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
    try:
        small = run_instrumented(_script(tmp_path, job), "1", "100", cwd=tmp_path, env=env, timeout=600)
        assert small.returncode == 0, small.stderr
        receiver.clear()
        big = run_instrumented(_script(tmp_path, job), "8", "10000", cwd=tmp_path, env=env, timeout=900)
        assert big.returncode == 0, big.stderr
        records = receiver.records(lifecycle=True)  # (checkpoints every 1000 records take their places in the sequence)
        if len(set(_identities(records))) < 80_001:  # exit timeout passed first: the rest is spooled
            assert flush_spool(env, spool).returncode == 0
            records = receiver.records(lifecycle=True)
        _assert_each_once_at_least(records, 80_001)
        growth_kib = int(big.stdout.split()[-1]) - int(small.stdout.split()[-1])
        # 80,000 records of ~1 KiB were written; none may be held in memory for long
        assert growth_kib < 100 * 1024, f"peak memory grew by {growth_kib} KiB"
    finally:
        receiver.stop()


def test_truncated_segment_intact_records_delivered_damage_reported(tmp_path, grpc_receiver):
    _, spool, _, _ = _run_while_collector_down(tmp_path)
    (segment,) = spool.rglob("*.seg")
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:  # a power cut in the middle of the last record
        handle.truncate(size - 100)
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    flushed = flush_spool(env, spool, "--redirect")  # owed to the collector that was down; this one is elsewhere
    assert flushed.returncode == 0, flushed.stderr
    assert "51 records delivered" in flushed.stdout  # the 50 accesses and "started"
    damage = [line for line in flushed.stderr.splitlines() if "spool damage" in line]
    assert len(damage) == 1 and f"of {segment}" in damage[0]
    damaged_bytes = int(damage[0].split("skipped: ")[1].split()[0])
    offset = int(damage[0].split("at offset ")[1].split()[0])
    assert offset + damaged_bytes == size - 100
    seqs = sorted(r["attributes"][schema.AUDIT_SEQ] for r in grpc_receiver.records())
    assert seqs == list(range(2, 52))  # (1: "started"; the closing checkpoint was in the damaged bytes)


def _unwritable(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")
    return blocker / "spool"  # makedirs fails even for root


def test_unwritable_spool_fail_open(tmp_path, grpc_receiver):
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(_unwritable(tmp_path)))
    result = run_instrumented(_script(tmp_path, WRITE_50 + "    print('done')\n"), cwd=tmp_path, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "done"
    warnings = [line for line in result.stderr.splitlines() if "AUDIT RECORDS NOT SPOOLED" in line]
    assert len(warnings) == 1  # loud, once
    assert "not-a-directory" in warnings[0]
    # open: the accesses went on, and their records took the in-memory path to the collector
    _assert_each_once_at_least(grpc_receiver.wait_for(50), 50)


def test_unwritable_spool_fail_closed(tmp_path, grpc_receiver):
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(_unwritable(tmp_path)),
                   OTEL_PYTHON_AUDIT_ON_FAILURE="closed")
    script = _script(tmp_path, """
    import os
    try:
        open("secret.csv", "w")
    except PermissionError as exc:
        print("refused:", exc)
    print("exists:", os.path.exists("secret.csv"))
    """)
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused: otel-audit refused this access because it could not be audited: cannot write "
                               "the spool")
    assert lines[1] == "exists: False"  # refused before it happened


def test_spool_cap(tmp_path, grpc_receiver):
    job = """
    for i in range(3000):
        try:
            open(f"f{i % 10}.txt", "w").close()
        except PermissionError:
            print("refused at", i)
            break
    """
    _, spool, _, result = _run_while_collector_down(
        tmp_path, job, OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES="1M", OTEL_PYTHON_AUDIT_ON_FAILURE="closed")
    refused_at = int(result.stdout.split()[-1])
    assert 0 < refused_at < 3000
    total = sum(p.stat().st_size for p in spool.rglob("*.seg"))
    assert total <= 1 << 20
    flushed = flush_spool(otlp_env(grpc_receiver, "grpc"), spool, "--redirect")  # a collector at another port
    assert flushed.returncode == 0, flushed.stderr
    _assert_each_once_at_least(grpc_receiver.records(), refused_at)


def test_spawned_pool_executor_and_subprocess_children(tmp_path, grpc_receiver):
    spool = tmp_path / "spool"
    env = otlp_env(grpc_receiver, "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    script = _script(tmp_path, """
    import multiprocessing, os, subprocess, sys
    from concurrent.futures import ProcessPoolExecutor

    def touch(name):
        with open(name, "w") as handle:
            handle.write(str(os.getpid()))
        return os.getpid()

    if __name__ == "__main__":
        touch("parent.txt")
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            spawned = set(pool.map(touch, [f"spawn-{i}.txt" for i in range(20)]))
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as executor:
            forked = set(executor.map(touch, [f"fork-{i}.txt" for i in range(20)]))
        child = subprocess.run([sys.executable, "-c", "open('child.txt', 'w').close()"], check=True)
        print(len(spawned | forked))
    """)
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    flushed = flush_spool(env, spool)  # what ended workers left behind, if anything
    assert flushed.returncode == 0, flushed.stderr
    records = [r for r in grpc_receiver.records() if r["attributes"][schema.AUDIT_RESOURCE_URI].startswith(tmp_path.as_uri() + "/")
               and r["attributes"][schema.AUDIT_RESOURCE_URI].endswith(".txt")]
    names = sorted(r["attributes"][schema.FILE_PATH].rsplit("/", 1)[1] for r in records)
    expected = sorted(["parent.txt", "child.txt"] + [f"spawn-{i}.txt" for i in range(20)]
                      + [f"fork-{i}.txt" for i in range(20)])
    assert sorted(set(names)) == expected  # every access delivered
    ids = _assert_each_once_at_least(records, len(expected))
    instances = {instance for instance, _ in ids}
    pids = {r["attributes"][schema.PROCESS_PID] for r in records}
    assert len(instances) == len(pids) >= 4  # parent, >= 2 workers, the subprocess: each its own identity


def test_record_encoder_writes_what_the_sdk_encoder_writes_byte_for_byte():
    """otel_audit.delivery.otlp writes the record path's protobuf by hand: for every value type, length and
    context, the very bytes the SDK's OTLP encoder makes, and they decode as the record they encode."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit.delivery.otlp import CACHE_LIMIT, LogRecordEncoder
    from otel_audit.delivery.shipper import decode_record, encode_record

    encoder = LogRecordEncoder()
    scope = InstrumentationScope("otel_audit", "0.1.0", None, {"audit.schema.version": "1"})
    values = ["", "x", "é" * 300, "y" * 70_000, "\x00\n\u2028", 0, 1, 127, 128, 300, -1, -(1 << 63), (1 << 63) - 1,
              1 << 40, True, False, 0.0, -2.5, float("inf"), b"", b"\xff\x00", ("a", "", "é"), (), [1, "two", 3.0],
              {"k": "v", "n": 1}, None]
    checked = 0
    for resource in (Resource.create({"service.name": "a"}), Resource({"service.name": "b", "k": 1}, "https://schema/1")):
        for i, value in enumerate(values):
            for trace_id, span_id, flags in ((0, 0, 0), (0xABC, 0xDEF, 1), ((1 << 128) - 1, (1 << 64) - 1, 0)):
                attributes = {"audit.seq": i, "audit.api": "builtins.open", "value": value, "": "empty key",
                              "file.size": 1 << 40}
                record = ReadableLogRecord(LogRecord(
                    timestamp=10 + i, observed_timestamp=20 + i, severity_number=SeverityNumber.WARN,
                    severity_text="WARN", body=value if isinstance(value, str) else f"body {i}", attributes=attributes,
                    event_name="audit.access", trace_id=trace_id, span_id=span_id, trace_flags=flags), resource, scope)
                for _ in range(2):  # the second time from the caches
                    assert encoder.encode(record) == encode_record(record), (value, trace_id)
                    if all(type(v) in (str, int) for v in attributes.values()):  # the recorder's own block key:
                        last = {**{k: v for k, v in attributes.items() if k != "audit.seq"}, "audit.seq": i}
                        ordered = ReadableLogRecord(LogRecord(  # (the per-record attributes last, as it makes them)
                            timestamp=10 + i, observed_timestamp=20 + i, severity_number=SeverityNumber.WARN,
                            severity_text="WARN", body=record.log_record.body, attributes=last,
                            event_name="audit.access", trace_id=trace_id, span_id=span_id, trace_flags=flags),
                            resource, scope)
                        assert encoder.resource_logs(resource, scope, encoder.log_record(
                            timestamp=10 + i, observed_timestamp=20 + i, severity_number=13, severity_text="WARN",
                            body=record.log_record.body, attributes=last, event_name="audit.access", trace_id=trace_id,
                            span_id=span_id, trace_flags=flags, block_key=tuple(last.items())[:-1],
                        )) == encode_record(ordered), (value, trace_id)
                parsed = logs_pb2.ResourceLogs.FromString(encoder.encode(record))
                assert parsed == logs_pb2.ResourceLogs.FromString(encode_record(record))
                (back,) = decode_record(encoder.encode(record))
                assert back.log_record.body == record.log_record.body
                assert back.log_record.attributes["file.size"] == 1 << 40
                assert (back.log_record.trace_id, back.log_record.span_id) == (trace_id, span_id)
                assert back.resource.attributes == resource.attributes
                checked += 1
    assert checked == 2 * len(values) * 3
    # and the audit_file sink's line of the spooled bytes is the line the stock OTLP/JSON encoder writes
    from opentelemetry.exporter.otlp.json.file._internal import _format_line
    from opentelemetry.exporter.otlp.json.file._log_exporter import _encode_logs_to_dict

    from otel_audit.delivery.otlp import export_request, resource_logs_parts
    from otel_audit.delivery.otlp_json import request_json, request_line

    batch = []
    for resource in (Resource.create({"service.name": "a"}), Resource({"service.name": "b", "k": 1}, "https://s/1")):
        for i, value in enumerate([*values, float("nan"), float("-inf"), (float("nan"), 1)]):
            batch.append(ReadableLogRecord(LogRecord(
                timestamp=10 + i, observed_timestamp=20 + i, severity_number=SeverityNumber.INFO, severity_text="INFO",
                body=value, attributes={"value": value, "": "empty key", "audit.seq": i}, event_name="audit.access",
                trace_id=i * 977, span_id=i * 31, trace_flags=i % 2), resource, scope))
    for records in ([one] for one in batch):  # each record alone, then the whole batch in one request
        request = export_request([resource_logs_parts(encoder.encode(r)) for r in records])
        stock = _format_line(_encode_logs_to_dict(records))
        assert _format_line(request_json(request)) == stock, records
        assert request_line(request) == stock == request_line(request), records  # (the second from its caches)
    request = export_request([resource_logs_parts(encoder.encode(r)) for r in batch])
    assert _format_line(request_json(request)) == _format_line(_encode_logs_to_dict(batch)) == request_line(request)
    assert request_json(export_request([])) is None and _encode_logs_to_dict([]) is None
    assert request_line(export_request([])) is None
    # no timestamp, no severity, no event name, an empty body: each field left out as the SDK leaves it out
    bare = ReadableLogRecord(LogRecord(observed_timestamp=5, attributes={}), Resource.create({}), scope)
    assert encoder.encode(bare) == encode_record(bare)
    # the pair cache is bounded: it starts over when full, and what it holds stays right
    for n in range(CACHE_LIMIT + 10):
        one = ReadableLogRecord(LogRecord(observed_timestamp=1, attributes={"file.path": f"/d/{n}"}), resource, scope)
        assert encoder.encode(one) == encode_record(one)
    assert len(encoder._pairs) <= CACHE_LIMIT



def test_sink_lines_of_spooled_records_are_read_off_the_wire_and_odd_bytes_get_the_reference_line(monkeypatch):
    """The audit_file sink's line of a spooled request (otlp_json.request_line) reads an audit record's wire format
    itself, without parsing it with protobuf; any bytes it does not expect give the reference's line (or its error)."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.json.file._internal import _format_line
    from opentelemetry.exporter.otlp.json.file._log_exporter import _encode_logs_to_dict
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogRecordMessage
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit.delivery import otlp_json
    from otel_audit.delivery.otlp import LogRecordEncoder, export_request, resource_logs_parts

    encoder = LogRecordEncoder()
    scope = InstrumentationScope("otel_audit", "0.1.0", None, {"audit.schema.version": "1"})
    resource = Resource.create({"service.name": "svc", "service.instance.id": "i-1"})
    records = [ReadableLogRecord(LogRecord(
        timestamp=1_700_000_000_000_000_000 + i, observed_timestamp=1_700_000_000_000_000_500 + i,
        severity_number=SeverityNumber.INFO if i % 3 else SeverityNumber.WARN, severity_text="INFO" if i % 3 else "WARN",
        body=f"user root read file:///data/{i % 4}.csv (é\u2028)", event_name=schema.EVENT_NAME,
        attributes={schema.AUDIT_RESOURCE_URI: f"file:///data/{i % 4}.csv", schema.FILE_PATH: f"/data/{i % 4}.csv",
                    schema.AUDIT_ACTION: "read", schema.CODE_LINE_NUMBER: 10 + i % 2, schema.FILE_SIZE: 1 << 40,
                    schema.PROCESS_PID: 4242, "neg": -5 - i, schema.USER_NAME: "\x00\"quoted\"\n",
                    schema.AUDIT_SEQ: i + 1, schema.AUDIT_RECORD_ID: f"abc-{i + 1}"},
        trace_id=(i * 977) % 3, span_id=(i * 31) % 3, trace_flags=i % 2), resource, scope) for i in range(40)]
    request = export_request([resource_logs_parts(encoder.encode(r)) for r in records])
    stock = _format_line(_encode_logs_to_dict(records))

    asked = []
    by_reference = otlp_json._reference_text

    def reference_text(kind: str, payload: bytes) -> str:
        asked.append(kind)
        return by_reference(kind, payload)

    with monkeypatch.context() as patched:  # an audit record's line: every part but the resource and scope read directly
        patched.setattr(otlp_json, "_reference_text", reference_text)
        patched.setattr(otlp_json, "request_json", None)  # (calling it would fail the test)
        assert otlp_json.request_line(request) == stock
        assert otlp_json.request_line(request) == stock  # from the caches
    assert set(asked) <= {"InstrumentationScope", "Resource"}  # (each once, unless an earlier test had it kept)

    def reference(data: bytes):
        try:
            parsed = otlp_json.request_json(data)
        except Exception as exc:
            return type(exc)
        return None if parsed is None else _format_line(parsed)

    def line(data: bytes):
        try:
            return otlp_json.request_line(data)
        except Exception as exc:
            return type(exc)

    def varint(n: int) -> bytes:
        out = bytearray()
        while n > 0x7F:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    one = resource_logs_parts(encoder.encode(records[1]))
    (scope_field, scope_schema, (log,)), = one[2]
    start, end = otlp_json._length(log, 1)  # the log record's field: tag, length, then the LogRecord
    payload = log[start:end]

    def with_log(record: bytes) -> bytes:
        return export_request([(one[0], one[1], [(scope_field, scope_schema, [b"\x12" + varint(len(record)) + record])])])

    assert reference(with_log(payload)) == line(with_log(payload)) == _format_line(_encode_logs_to_dict([records[1]]))
    odd = {
        "an unknown field": payload + b"\xa0\x06\x01",  # field 100, a varint
        "a timestamp twice": payload + b"\x09" + (7).to_bytes(8, "little"),
        "a body twice (merged)": payload + b"\x2a\x02\x10\x01",
        "a severity of two bytes": b"\x10\x96\x01",  # (the records' own severity: a field given twice)
        "a severity beyond 32 bits": b"\x10" + varint(1 << 35 | 5),
        "a list body twice (merged)": b"".join(LogRecordMessage(body={"array_value": {"values": [{"int_value": n}]}})
                                              .SerializeToString() for n in (1, 2)),
        "a negative severity": b"\x10" + b"\xff" * 9 + b"\x01",
        "a severity given twice": payload + b"\x10\x05",
        "an empty body": payload + b"",
        "invalid UTF-8 in a string": payload.replace(b"root", b"r\xffot", 1),
        "a truncated field": payload[:-3],
        "an attribute with no key": payload + b"\x32\x04\x12\x02\x10\x01",
        "an attribute with no value": payload + b"\x32\x03\x0a\x01k",
        "a kvlist attribute": payload + b"\x32\x0f\x0a\x01k\x12\x0a\x32\x08\x0a\x06\x0a\x01a\x12\x01\x10",
        "a bytes attribute": payload + b"\x32\x09\x0a\x01k\x12\x04\x3a\x02\xff\x00",
        "a double attribute": payload + b"\x32\x0e\x0a\x01k\x12\x09\x21" + b"\x00" * 7 + b"\xf0",
        "a string with a trailing field": payload + b"\x32\x0a\x0a\x01k\x12\x05\x0a\x01v\x10\x01",
        "a body that is an integer": LogRecordMessage(body={"int_value": 7}, time_unix_nano=3).SerializeToString(),
        "a body that is a list": LogRecordMessage(body={"array_value": {"values": [{"bool_value": True}]}})
        .SerializeToString(),
        "dropped attributes": payload + b"\x38\x03",
        "flags": payload + b"\x45\x01\x00\x00\x00",
        "an empty event name": payload + b"\x62\x00",
        "no fields at all": b"",
    }
    checked = 0
    for name, odd_payload in odd.items():
        data = with_log(odd_payload)
        expected = reference(data)
        assert line(data) == expected, (name, line(data), expected)
        checked += expected is not None and not isinstance(expected, type)
    assert checked >= 12  # most are valid OTLP, written
    for request_bytes in (b"\x0a\x02\x12\x00", b"\x12\x00", b"\x0a\x05\x0a", b"\xff", request[:-1],
                          request + b"\x0a\x00", ExportLogsServiceRequest().SerializeToString()):
        assert line(request_bytes) == reference(request_bytes), request_bytes


def test_record_heads_kept_encoded_give_the_sdk_bytes_for_every_record_of_a_call_site():
    """The record path keeps a record's repeating stretch (severity to the attributes before audit.seq and
    audit.record.id) encoded: records of one call site, one file, one outcome, read from that cache, are
    still byte for byte what the SDK encodes; so are neighbours that differ in one value or its type."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit.delivery.otlp import BLOCKS_KEPT, FORMATTED_BODY, LogRecordEncoder
    from otel_audit.delivery.shipper import encode_record

    encoder = LogRecordEncoder()
    resource, scope = Resource.create({"service.name": "a"}), InstrumentationScope("otel_audit", "0.1.0")

    def audit_attributes(seq: int, **changes) -> dict:
        attributes = {schema.AUDIT_RESOURCE_URI: "file:///d/x.bin", schema.AUDIT_RESOURCE_TYPE: "data",
                      schema.AUDIT_ACTION: "read", schema.AUDIT_API: "builtins.open", schema.CODE_LINE_NUMBER: 7,
                      schema.FILE_SIZE: 4096, schema.AUDIT_OUTCOME: "success", schema.USER_NAME: "u",
                      schema.PROCESS_PID: 99, **changes}
        attributes[schema.AUDIT_SEQ] = seq
        attributes[schema.AUDIT_RECORD_ID] = f"abc-{seq}"
        return attributes

    def both(attributes: dict, body=FORMATTED_BODY, severity=SeverityNumber.INFO) -> tuple[bytes, bytes]:
        timestamp = 1_700_000_000_000_000_000 + attributes[schema.AUDIT_SEQ]
        ours = encoder.resource_logs(resource, scope, encoder.log_record(
            timestamp=timestamp, observed_timestamp=timestamp + 5, severity_number=severity.value,
            severity_text=severity.name, body=body, attributes=attributes, event_name=schema.EVENT_NAME))
        sdk = encode_record(ReadableLogRecord(LogRecord(
            timestamp=timestamp, observed_timestamp=timestamp + 5, severity_number=severity, severity_text=severity.name,
            body=schema.format_body(attributes) if body is FORMATTED_BODY else body, attributes=attributes,
            event_name=schema.EVENT_NAME), resource, scope))
        return ours, sdk

    for seq in (1, 2, 127, 128, 16_383, 16_384, 1 << 30):  # the same head, read from the cache after the first
        ours, sdk = both(audit_attributes(seq))
        assert ours == sdk, seq
    assert len(encoder._blocks) == 1
    for changes in ({schema.CODE_LINE_NUMBER: 8}, {schema.FILE_SIZE: 0}, {schema.AUDIT_OUTCOME: "failure"},
                    {schema.FILE_SIZE: True}, {schema.FILE_SIZE: 4096.0}, {schema.CODE_LINE_NUMBER: False},
                    {schema.AUDIT_RESOURCE_FILES: ("a", "b")}, {"extra": ["unhashable"]}):
        for seq in (3, 4):
            ours, sdk = both(audit_attributes(seq, **changes))
            assert ours == sdk, changes
    ours, sdk = both(audit_attributes(5), body="a body of its own")
    assert ours == sdk
    ours, sdk = both(audit_attributes(6), body="another body")  # the same attributes: not the block above
    assert ours == sdk
    ours, sdk = both(audit_attributes(7), severity=SeverityNumber.WARN)
    assert ours == sdk
    for n in range(BLOCKS_KEPT + 3):  # bounded
        ours, sdk = both(audit_attributes(n, **{schema.FILE_SIZE: n}))
        assert ours == sdk
    assert len(encoder._blocks) <= BLOCKS_KEPT


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_exporters_get_the_spooled_bytes_through_their_own_transport_and_settings(tmp_path, monkeypatch,
                                                                                        protocol):
    """The stock OTLP exporter, made from OTEL_EXPORTER_OTLP_* as the SDK makes it, sends the spooled
    bytes: each request is exactly the message the SDK's encoder makes of the same records, with the
    exporter's headers and compression, two requests for more than one batch."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, InMemoryLogRecordExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit.delivery import otlp, spool, transport
    from otel_audit.delivery.shipper import BATCH_SIZE, deliver_segment, exporters_from_env
    from otel_audit.delivery.sink import AuditFileLogExporter

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    receiver = (GrpcLogsReceiver() if protocol == "grpc" else HttpLogsReceiver()).start()
    settings = {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-audit-token=s3cret,x-team=ml",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    (name, exporter), = exporters_from_env().items()
    try:
        assert transport.sender_for(exporter) is not None
        scope = InstrumentationScope("otel_audit", "0.1.0", None, {"audit.schema.version": "1"})
        resource = Resource.create({"service.name": "wire", "service.instance.id": "i-1"})
        records = [ReadableLogRecord(LogRecord(
            timestamp=1_000 + i, observed_timestamp=2_000 + i, severity_number=SeverityNumber.INFO,
            severity_text="INFO", body=f"root read data file:///d/{i} via builtins.open (success)",
            attributes={"audit.seq": i + 1, "audit.resource.uri": f"file:///d/{i}", "file.size": i * 4096,
                        "audit.resource.files": ("config.json", f"shard-{i}")},
            event_name="audit.access", trace_id=i * 7919, span_id=i * 13, trace_flags=i % 2), resource, scope)
            for i in range(BATCH_SIZE + 88)]
        writer = spool.SegmentWriter(str(tmp_path))
        encoder = otlp.LogRecordEncoder()
        for record in records:
            writer.append(encoder.encode(record))
        acks, complete = deliver_segment(writer.path, {name: exporter}, {}, complete_only=False)
        assert complete and acks == {name: writer.size}  # (where its records end: reserved zeros follow)
        assert len(receiver.wait_for(len(records))) == len(records)
        assert receiver.requests == [encode_logs(records[:BATCH_SIZE]), encode_logs(records[BATCH_SIZE:])]
        assert len(receiver.headers) == 2
        for headers in receiver.headers:
            assert (headers["x-audit-token"], headers["x-team"]) == ("s3cret", "ml")
            if protocol != "grpc":
                assert headers["content-encoding"] == "gzip"
    finally:
        exporter.shutdown()
        receiver.stop()
    # the audit_file sink takes the bytes too; exporters otel-audit cannot hand bytes to get SDK records
    assert transport.sender_for(AuditFileLogExporter(tmp_path / "t.jsonl")) is not None
    for other in (ConsoleLogRecordExporter(), InMemoryLogRecordExporter()):
        assert transport.sender_for(other) is None


def test_a_spooled_record_that_is_not_otlp_is_skipped_and_said_the_others_delivered(tmp_path, capfd):
    from otel_audit import diagnostics
    from otel_audit.delivery import otlp, spool
    from otel_audit.delivery.shipper import deliver_segment, exporters_from_env

    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    receiver = GrpcLogsReceiver().start()
    writer = spool.SegmentWriter(str(tmp_path))
    encoder = otlp.LogRecordEncoder()
    for body in ("before", None, "after"):
        writer.append(b"\x0a\xff\xff\x03not protobuf" if body is None else encoder.encode(ReadableLogRecord(
            LogRecord(body=body, observed_timestamp=1), Resource.create({}), InstrumentationScope("t"))))
    diagnostics._forget()
    env = {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        (name, exporter), = exporters_from_env().items()
        acks, complete = deliver_segment(writer.path, {name: exporter}, {}, complete_only=False)
        exporter.shutdown()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        receiver.stop()
    assert complete and [r["body"] for r in receiver.records()] == ["before", "after"]
    assert "not decodable (NotOtlp: a field runs past the end); skipped" in capfd.readouterr().err


def test_flush_delivers_records_only_where_their_process_meant_them_to_go(tmp_path):
    """Spooled by a process configured for OTLP; a shell configured for the audit_file sink flushes: nothing
    goes to the file, nothing is deleted, it says so; a flush configured like the producer delivers all."""
    port, spool, env, _ = _run_while_collector_down(tmp_path)
    trail = tmp_path / "elsewhere.jsonl"
    wrong = flush_spool({**env, "OTEL_LOGS_EXPORTER": "audit_file", "OTEL_PYTHON_AUDIT_FILE": str(trail)}, spool)
    assert wrong.returncode == 1
    assert "otel-audit flush: 0 records delivered" in wrong.stdout
    assert "52 records NOT delivered" in wrong.stderr  # the accesses, "started" and the closing checkpoint
    assert (f"otel-audit: records owed to 'otlp_proto_grpc 127.0.0.1:{port}' are not delivered from here, which is "
            f"configured for audit_file {trail}: they stay in the spool") in wrong.stderr
    assert not trail.exists() and len(list(spool.rglob("*.seg"))) == 1

    receiver = GrpcLogsReceiver(port).start()  # the producer's own collector, back
    try:
        right = flush_spool(env, spool)
        assert right.returncode == 0, right.stderr
        assert "52 records delivered" in right.stdout  # the accesses, "started" and the closing checkpoint
        _assert_each_once_at_least(receiver.records(), 50)
        assert not list(spool.rglob("*.seg")) and not list(spool.rglob("*.dest"))
    finally:
        receiver.stop()


def test_flush_redirect_delivers_elsewhere_on_purpose(tmp_path):
    _, spool, env, _ = _run_while_collector_down(tmp_path)
    trail = tmp_path / "instead.jsonl"
    redirected = flush_spool({**env, "OTEL_LOGS_EXPORTER": "audit_file", "OTEL_PYTHON_AUDIT_FILE": str(trail)}, spool,
                        "--redirect")
    assert redirected.returncode == 0, redirected.stderr
    assert "52 records delivered" in redirected.stdout  # the accesses, "started" and the closing checkpoint
    assert len(records_from_jsonl(trail)) == 50 and not list(spool.rglob("*.seg"))


def test_each_segment_names_the_destinations_its_records_are_owed(tmp_path):
    _, spool, env, _ = _run_while_collector_down(tmp_path)
    (segment,) = spool.rglob("*.seg")
    port = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit(":", 1)[1]
    assert json.loads(Path(f"{segment}.dest").read_text()) == [f"otlp_proto_grpc 127.0.0.1:{port}"]


def test_a_segment_closed_at_its_size_is_delivered_before_the_shipper_says_nothing_is_pending(tmp_path, monkeypatch):
    """A long-running process fills segments: each full one is closed (and becomes an orphan, delivered and
    deleted). Until it is delivered the shipper counts it as pending, so a process waiting for its records
    (the exit, a benchmark) does not stop short."""
    import time as clock

    from otel_audit import AuditInstrumentor
    from otel_audit.config import AuditConfig
    from otel_audit.recorder import default_recorder

    trail = tmp_path / "trail.jsonl"
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "audit_file")
    monkeypatch.setenv("OTEL_PYTHON_AUDIT_FILE", str(trail))
    AuditInstrumentor().instrument(config=AuditConfig(delivery="durable", spool_dir=str(tmp_path / "spool")))
    try:
        shipper = default_recorder().shipper()
        shipper.writer.max_segment_bytes = 64 * 1024  # a segment every ~80 records
        for i in range(400):
            open(tmp_path / f"f{i % 7}.txt", "w").close()
        deadline = clock.monotonic() + 60
        while shipper.pending() and clock.monotonic() < deadline:
            clock.sleep(0.01)
        assert not shipper.pending()
        paths = [r["attributes"][schema.FILE_PATH] for r in records_from_jsonl(trail)
                 if r["attributes"].get(schema.FILE_PATH, "").startswith(str(tmp_path))]
        assert len(paths) == 400  # every record in the file once nothing is pending
        assert len(list((tmp_path / "spool").rglob("*.seg"))) == 1  # the full segments were deleted
    finally:
        AuditInstrumentor().uninstrument()
