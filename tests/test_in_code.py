"""The SDK configured in code, no destination in the environment: durable delivery goes where the code
said, through the real SDK and real exporter objects, to a real receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import otel_audit_lines
from otel_audit import schema

SETUP = {
    # a LoggerProvider with a batch processor and an OTLP/HTTP exporter object, given to instrument()
    "logger_provider": """
        provider = LoggerProvider(resource=Resource.create({"service.name": "in-code"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=ENDPOINT)))
        AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(spool_dir=SPOOL))
    """,
    # the same provider made global; instrument() finds it
    "global_provider": """
        provider = LoggerProvider(resource=Resource.create({"service.name": "in-code"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=ENDPOINT)))
        set_logger_provider(provider)
        AuditInstrumentor().instrument(config=AuditConfig(spool_dir=SPOOL))
    """,
    # exporter objects handed to instrument() itself: shipped with every guarantee
    "exporters": """
        provider = LoggerProvider(resource=Resource.create({"service.name": "in-code"}))
        AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(spool_dir=SPOOL),
                                       exporters=[OTLPLogExporter(endpoint=ENDPOINT)])
    """,
}

SCRIPT = """
    import os, signal, sys
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from otel_audit import AuditConfig, AuditInstrumentor
    ENDPOINT, SPOOL, ACCESSES, KILL = sys.argv[1] + "/v1/logs", sys.argv[2], int(sys.argv[3]), sys.argv[4] == "kill"
{setup}
    for i in range(ACCESSES):
        with open(f"data-{{i}}.txt", "w") as handle:
            handle.write("x")
    if KILL:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _run(tmp_path: Path, how: str, receiver, accesses: int, kill: bool = False) -> subprocess.CompletedProcess:
    script = tmp_path / f"{how}.py"
    script.write_text(textwrap.dedent(SCRIPT.format(setup=textwrap.indent(textwrap.dedent(SETUP[how]), "    "))))
    # nothing of OpenTelemetry's in the environment: the destination is the code's alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, str(script), receiver.endpoint, str(tmp_path / "spool"), str(accesses),
                           "kill" if kill else "exit"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def _check(records, tmp_path: Path, count: int) -> None:
    audited = sorted((r for r in records if r["event_name"] == schema.EVENT_NAME),
                     key=lambda r: r["attributes"][schema.AUDIT_SEQ])
    assert [r["attributes"][schema.AUDIT_SEQ] for r in audited] == list(range(2, count + 2))  # 1: "started"
    for i, record in enumerate(audited):
        a = record["attributes"]
        assert (a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME]) == ("builtins.open", "write",
                                                                                         "success")
        assert a[schema.FILE_PATH] == str(tmp_path / f"data-{i}.txt")
        assert record["resource"]["service.name"] == "in-code"
        assert record["scope"]["name"] == schema.SCOPE_NAME


@pytest.mark.parametrize("how", ["logger_provider", "global_provider", "exporters"])
def test_durable_delivery_goes_where_the_code_configured(tmp_path, how, http_receiver):
    result = _run(tmp_path, how, http_receiver, 3)
    assert result.returncode == 0, result.stderr
    assert otel_audit_lines(result.stderr) == [], result.stderr
    _check(http_receiver.wait_for(3, timeout=10), tmp_path, 3)
    assert list((tmp_path / "spool" / "in-code").iterdir()) == []  # delivered, so not kept


def test_exporters_given_in_code_deliver_what_a_killed_process_left(tmp_path, http_receiver):
    killed = _run(tmp_path, "exporters", http_receiver, 4, kill=True)
    assert killed.returncode == -9
    spooled = list((tmp_path / "spool" / "in-code").glob("*.seg"))
    assert len(spooled) == 1
    after = _run(tmp_path, "exporters", http_receiver, 1)  # the next process of the service
    assert after.returncode == 0, after.stderr
    records = http_receiver.wait_for(5, timeout=10)
    by_instance: dict[str, set] = {}
    for r in records:
        by_instance.setdefault(r["resource"]["service.instance.id"], set()).add(r["attributes"][schema.AUDIT_SEQ])
    # the killed process's four records (some may have left before the kill: at least once), under its own
    # resource, and the next process's one
    assert sorted(by_instance.values(), key=len) == [{2}, {2, 3, 4, 5}]  # (audit.seq 1: each one's "started")
    assert not spooled[0].exists()


def test_a_provider_without_processors_keeps_records_in_the_spool_and_says_so(tmp_path, http_receiver):
    script = tmp_path / "bare.py"
    script.write_text(textwrap.dedent("""
        import sys
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk.resources import Resource
        from otel_audit import AuditConfig, AuditInstrumentor
        provider = LoggerProvider(resource=Resource.create({"service.name": "in-code"}))
        AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(spool_dir=sys.argv[1]))
        open("data.txt", "w").close()
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "spool")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert otel_audit_lines(result.stderr)[0] == (
        "otel-audit: the LoggerProvider configured in code has no log record processor, and OTEL_LOGS_EXPORTER "
        "is not set: audit records stay in the spool (add a processor with an exporter, or pass exporters= to "
        "instrument())")
    assert len(list((tmp_path / "spool" / "in-code").glob("*.seg"))) == 1
