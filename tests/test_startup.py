"""When OpenTelemetry's own configuration fails, auditing does not silently stop.

``opentelemetry-instrument`` with an exporter name the SDK cannot resolve (``OTEL_LOGS_EXPORTER=bogus``,
a typo in ``OTEL_TRACES_EXPORTER``) logs the SDK's traceback and loads no instrumentor at all.
otel-audit's start-up hook (``otel_audit.pth``, see ``otel_audit/_startup.py``) starts it anyway:
every record is spooled, the problem is said once in otel-audit's own words, and ``otel-audit flush``
delivers the records later.  OpenTelemetry itself behaves exactly as without otel-audit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import flush_spool, instrumented_env, otel_audit_lines, otlp_env, records_from_jsonl, run_instrumented
from otel_audit import schema

READS = 3

JOB = f"""\
import json, sys
from opentelemetry import trace
for _ in range({READS}):
    with open("data.csv") as f:
        f.read()
print(json.dumps({{"tracer_provider": type(trace.get_tracer_provider()).__name__,
                  "otel_audit_loaded": "otel_audit.instrumentor" in sys.modules}}))
"""


def _job(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    script = tmp_path / "job.py"
    script.write_text(JOB)
    return script


def _facts(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_reads(records: list[dict], tmp_path: Path) -> None:
    reads = [r for r in records if r["event_name"] == schema.EVENT_NAME]
    assert len(reads) == READS
    for seq, record in enumerate(reads, start=2):  # audit.seq 1 is the lifecycle record "started"
        attrs = record["attributes"]
        assert attrs[schema.AUDIT_RESOURCE_URI] == (tmp_path / "data.csv").resolve().as_uri()
        assert attrs[schema.AUDIT_ACTION] == "read"
        assert attrs[schema.AUDIT_API] == "builtins.open"
        assert attrs[schema.AUDIT_RESOURCE_TYPE] == "data"
        assert attrs[schema.AUDIT_OUTCOME] == "success"
        assert (Path(attrs[schema.CODE_FILE_PATH]).name, attrs[schema.CODE_LINE_NUMBER]) == ("job.py", 4)
        assert attrs[schema.AUDIT_SEQ] == seq
        assert record["resource"]["service.name"] == "audit-test"


def test_a_bogus_logs_exporter_still_spools_every_record_and_says_so_once(tmp_path, grpc_receiver):
    spool = tmp_path / "spool"
    env = instrumented_env(OTEL_LOGS_EXPORTER="bogus", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    facts = _facts(result)
    # OpenTelemetry behaves as it does without otel-audit: its traceback, no SDK, no other instrumentor
    assert "Failed to auto initialize OpenTelemetry" in result.stderr
    assert facts["tracer_provider"] == "ProxyTracerProvider"
    assert facts["otel_audit_loaded"] is True
    said = otel_audit_lines(result.stderr)
    assert said[0] == (
        "otel-audit: OpenTelemetry's configuration failed (RuntimeError: \"Requested component 'bogus' not found in "
        "entry point 'opentelemetry_logs_exporter'\"), so opentelemetry-instrument loads no instrumentation; "
        "otel-audit audits on its own")
    assert said[1].startswith("otel-audit: OTEL_LOGS_EXPORTER='bogus': 'bogus' is not an installed logs exporter "
                              "(accepted: audit_file, console, otlp, ")
    assert ", none, comma-separated); audit records stay in the spool: `otel-audit flush` delivers them" in said[1]
    assert said[2].startswith("otel-audit: audit records not yet acknowledged at exit stay in the spool")
    assert len(said) == 3
    assert len(list(spool.rglob("*.seg"))) == 1

    flushed = flush_spool(otlp_env(grpc_receiver, "grpc"), spool)
    assert flushed.returncode == 0, flushed.stderr
    _check_reads(grpc_receiver.wait_for(READS), tmp_path)
    assert list(spool.rglob("*.seg")) == []


def test_a_bogus_traces_exporter_does_not_stop_audit_records_reaching_their_file(tmp_path):
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_TRACES_EXPORTER="otlp,bogus")
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert _facts(result)["tracer_provider"] == "ProxyTracerProvider"
    assert otel_audit_lines(result.stderr) == [
        "otel-audit: OpenTelemetry's configuration failed (RuntimeError: \"Requested component 'bogus' not found in "
        "entry point 'opentelemetry_traces_exporter'\"), so opentelemetry-instrument loads no instrumentation; "
        "otel-audit audits on its own"]
    _check_reads(records_from_jsonl(trail), tmp_path)


def test_memory_delivery_with_no_sdk_pipeline_spools_instead_of_losing_records(tmp_path):
    spool = tmp_path / "spool"
    env = instrumented_env(OTEL_LOGS_EXPORTER="bogus", OTEL_PYTHON_AUDIT_DELIVERY="memory",
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    _facts(result)
    assert otel_audit_lines(result.stderr)[0].endswith(
        "otel-audit audits on its own (durable delivery, whatever OTEL_PYTHON_AUDIT_DELIVERY says: "
        "there is no SDK pipeline)")
    trail = tmp_path / "later.jsonl"
    flushed = flush_spool(instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail)), spool)
    assert flushed.returncode == 0, flushed.stderr
    _check_reads(records_from_jsonl(trail), tmp_path)


@pytest.mark.parametrize("disabled", ["otel_audit", "flask, otel_audit", "*"])
def test_disabled_means_disabled_even_when_the_configuration_fails(tmp_path, disabled):
    spool = tmp_path / "spool"
    env = instrumented_env(OTEL_LOGS_EXPORTER="bogus", OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool),
                           OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled)
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert _facts(result)["otel_audit_loaded"] is False
    assert otel_audit_lines(result.stderr) == []
    assert not spool.exists() or list(spool.rglob("*.seg")) == []


def test_the_hook_costs_nothing_outside_opentelemetry_instrument(tmp_path):
    """The .pth line runs in every interpreter of the environment: without auto-instrumentation on
    PYTHONPATH it imports nothing."""
    env = {k: v for k, v in instrumented_env(OTEL_LOGS_EXPORTER="bogus").items() if k != "PYTHONPATH"}
    probe = "import sys; print(sorted(m for m in sys.modules if m.startswith(('otel_audit', 'wrapt', 'opentelemetry'))))"
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.strip() == "[]"

