"""Shared fixtures: an in-process audited SDK pipeline, real OTLP receivers, instrumented subprocesses."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit import AuditInstrumentor, diagnostics
from otel_audit.config import AuditConfig

sys.path.insert(0, str(Path(__file__).parent))
from otlp_receiver import GrpcLogsReceiver, HttpLogsReceiver, flatten, records_from_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OPENTELEMETRY_INSTRUMENT = str(BIN / "opentelemetry-instrument")


@dataclass
class AuditedPipeline:
    """otel-audit instrumented in this process, exporting through the real SDK into memory."""

    exporter: InMemoryLogRecordExporter
    provider: LoggerProvider
    root: Path  # only records under this directory (or S3) are the test's own

    def everything(self) -> list[dict]:
        """Every record, otel-audit's lifecycle records among the accesses."""
        self.provider.force_flush()
        # Encode exactly as the OTLP exporters do, then decode: tests see the wire shape.
        return flatten([encode_logs(self.exporter.get_finished_logs())])

    def all_records(self) -> list[dict]:
        """Every access record."""
        return [r for r in self.everything() if r["event_name"] == "audit.access"]

    def lifecycle(self) -> list[dict]:
        """otel-audit's own lifecycle records (audit.lifecycle: started, hook_failed, policy_loaded...)."""
        return [r for r in self.everything() if r["event_name"] == "audit.lifecycle"]

    def records(self) -> list[dict]:
        """Records of the test's own resources (files under ``root``, S3 objects, URLs)."""
        prefix = "file://" + str(self.root)
        return [
            r for r in self.all_records()
            if not r["attributes"]["audit.resource.uri"].startswith("file://")
            or r["attributes"]["audit.resource.uri"].startswith(prefix)
        ]

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def audit_config() -> AuditConfig:
    """Override in a test module to instrument with another configuration."""
    return AuditConfig()


@contextlib.contextmanager
def audited_pipeline(root: Path, config: AuditConfig, tracer_provider=None):
    """otel-audit instrumented with ``config`` into an in-memory SDK pipeline, uninstrumented on exit.

    Records go through the SDK (``delivery="memory"``): hook tests read them from the SDK's exporter.
    Audit spans (``config.spans``) go to ``tracer_provider``.
    """
    config = dataclasses.replace(config, delivery="memory")
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "otel-audit-tests"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    diagnostics._forget()
    instrumentor = AuditInstrumentor()
    instrumentor.instrument(logger_provider=provider, tracer_provider=tracer_provider, config=config)
    try:
        yield AuditedPipeline(exporter, provider, root.resolve())
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


@pytest.fixture
def audited(tmp_path, audit_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with audited_pipeline(tmp_path, audit_config) as pipeline:
        yield pipeline


@pytest.fixture
def grpc_receiver():
    receiver = GrpcLogsReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_receiver():
    receiver = HttpLogsReceiver().start()
    yield receiver
    receiver.stop()


# moto's server runs in a child process, so this process is only the S3 client, as in production:
# nothing of moto is imported here (in-process, moto adds its own handler to botocore), and its
# server-side work (it spools large bodies to temporary files) is no access of this program.
_SERVE = """
import threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A moto S3 (and IAM) server on a free port, for the whole session; yields its endpoint URL."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as stderr:
        server = subprocess.Popen([sys.executable, "-c", _SERVE], stdout=subprocess.PIPE, stderr=stderr)
    try:
        port = server.stdout.readline().strip()
        assert port.isdigit(), log.read_text()
        yield f"http://127.0.0.1:{int(port)}"
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


# Children's spools live under one directory, removed when the test session ends.
_SPOOL_ROOT = tempfile.mkdtemp(prefix="otel-audit-test-spools-")
atexit.register(shutil.rmtree, _SPOOL_ROOT, True)


def instrumented_env(**overrides: str) -> dict:
    """Environment for a child under ``opentelemetry-instrument``: nothing inherited that steers OTel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_"))}
    env.update({
        "OTEL_SERVICE_NAME": "audit-test",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "PYTHONUNBUFFERED": "1",
        # never the developer's own spool: a fresh one per child unless the test names one
        "OTEL_PYTHON_AUDIT_SPOOL_DIR": tempfile.mkdtemp(prefix="spool-", dir=_SPOOL_ROOT),
    })
    env.update(overrides)
    return env


def flush_spool(env: dict, spool: Path, *options: str) -> subprocess.CompletedProcess:
    """``otel-audit flush --spool-dir SPOOL [options]`` with ``env``, as a user runs it."""
    return subprocess.run([str(BIN / "otel-audit"), "flush", "--spool-dir", str(spool), *options],
                          env=env, capture_output=True, text=True, timeout=120)


def otel_audit_lines(output: str) -> list[str]:
    """What otel-audit itself said: its lines start with ``otel-audit: ``.  Never match a bare substring
    of a child's output instead: the checkout's path (a clone named otel-audit), the user name, the temp
    dir or the virtualenv can contain it."""
    return [line for line in output.splitlines() if line.startswith(f"{diagnostics.PREFIX} ")]


def run_instrumented(script: Path | str, *args: str, cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """``opentelemetry-instrument python script args...``, the way a user runs it."""
    return subprocess.run(
        [OPENTELEMETRY_INSTRUMENT, sys.executable, str(script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def otlp_env(receiver, protocol: str, **overrides: str) -> dict:
    return instrumented_env(
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
        **overrides,
    )


__all__ = ["records_from_jsonl", "run_instrumented", "instrumented_env", "otlp_env", "otel_audit_lines", "flush_spool", "REPO"]
