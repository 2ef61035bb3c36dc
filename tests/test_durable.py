"""Durable delivery: real processes under `opentelemetry-instrument`, a real OTLP receiver, real faults.

Every record must arrive at least once; (service.instance.id, audit.seq) tells duplicates apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN, otlp_env, run_instrumented
from otlp_receiver import GrpcLogsReceiver, HttpLogsReceiver
from otel_audit import schema


def _identities(records) -> list[tuple[str, int]]:
    return [(r["resource"]["service.instance.id"], r["attributes"][schema.AUDIT_SEQ]) for r in records
            if r["event_name"] == schema.EVENT_NAME]


def _assert_each_once_at_least(records, expected_count: int) -> set:
    ids = set(_identities(records))
    assert len(ids) == expected_count, f"{len(ids)} distinct records of {expected_count}"
    by_instance: dict[str, list[int]] = {}
    for instance, seq in ids:
        by_instance.setdefault(instance, []).append(seq)
    for seqs in by_instance.values():  # no gap in any process's sequence: nothing lost
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
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


def _flush(env: dict, spool: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "otel-audit"), "flush", "--spool-dir", str(spool)],
                          env=env, capture_output=True, text=True, timeout=120)


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
        flushed = _flush(env, spool)
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        assert "50 records delivered" in flushed.stdout
        _assert_each_once_at_least(receiver.records(), 50)
        assert not list(spool.rglob("*.seg")) and not list(spool.rglob("*.ack"))
        again = _flush(env, spool)
        assert again.returncode == 0 and "0 records delivered" in again.stdout
    finally:
        receiver.stop()


def test_flush_fails_with_a_count_while_the_collector_is_down(tmp_path):
    port = _free_port()
    spool = tmp_path / "spool"
    env = otlp_env(Nobody(port), "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool),
                   OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="0", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    assert run_instrumented(_script(tmp_path, WRITE_50), cwd=tmp_path, env=env).returncode == 0
    flushed = _flush(env, spool)
    assert flushed.returncode == 1
    assert "50 records NOT delivered" in flushed.stderr
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
    flushed = _flush(env, spool)
    assert flushed.returncode == 0, flushed.stderr
    _assert_each_once_at_least(grpc_receiver.records(), 50)


def test_the_next_process_of_the_service_delivers_leftovers(tmp_path):
    port = _free_port()
    spool = tmp_path / "spool"
    env = otlp_env(Nobody(port), "grpc", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool),
                   OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="0", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    assert run_instrumented(_script(tmp_path, WRITE_50), cwd=tmp_path, env=env).returncode == 0
    receiver = GrpcLogsReceiver(port).start()
    try:
        second = _script(tmp_path, "open('one-more.txt', 'w').close()\n")
        assert run_instrumented(second, cwd=tmp_path, env=env).returncode == 0
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
    flushed = _flush(env, spool)  # whatever a worker's exit left behind
    assert flushed.returncode == 0, flushed.stderr
    records = [r for r in grpc_receiver.records() if r["attributes"][schema.AUDIT_RESOURCE_URI].startswith(data.as_uri())]
    uris = {r["attributes"][schema.AUDIT_RESOURCE_URI] for r in records}
    assert uris == {(data / f"{i}.txt").as_uri() for i in range(200)}
    pids = {r["attributes"][schema.PROCESS_PID] for r in records}
    assert len(pids) == 2 and os.getpid() not in pids  # the two workers' own pids
    assert len(set(_identities(records))) == 200  # each record once, identifiable
    instances = {r["resource"]["service.instance.id"] for r in records}
    assert len(instances) == 2  # a fresh service.instance.id per worker
