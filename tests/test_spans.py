"""Audit spans (``OTEL_PYTHON_AUDIT_SPANS``): each access is also a span, and its record points at it."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import audited_pipeline, otlp_env, run_instrumented
from otel_audit import schema
from otel_audit.config import AuditConfig, ConfigError

SPAN_KIND_INTERNAL = 1  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_CODE_UNSET, STATUS_CODE_ERROR = 0, 2


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _read_one_and_miss_one(root, tracer):
    with tracer.start_as_current_span("run") as run:
        with open(root / "present.csv") as stream:
            assert stream.read() == "a\n1\n"
        with pytest.raises(FileNotFoundError):
            open(root / "absent.csv")
    return run


def test_each_access_is_a_span_under_the_current_one_and_its_record_points_at_it(tmp_path, tracing):
    provider, exporter = tracing
    tracer = provider.get_tracer("test")
    with audited_pipeline(tmp_path, AuditConfig(spans=True), tracer_provider=provider) as audited:
        (tmp_path / "present.csv").write_text("a\n1\n")  # not part of the run
        audited.clear()
        exporter.clear()
        run = _read_one_and_miss_one(tmp_path, tracer)
        records = audited.records()
    run_context = run.get_span_context()
    finished = exporter.get_finished_spans()
    audit_spans = [s for s in finished if s.instrumentation_scope.name == "otel_audit"]
    assert [s.name for s in finished] == ["audit read builtins.open", "audit read builtins.open", "run"]
    assert len(records) == len(audit_spans) == 2
    for record, span in zip(records, audit_spans):
        assert span.kind is SpanKind.INTERNAL
        assert span.parent.span_id == run_context.span_id
        assert span.context.trace_id == run_context.trace_id
        assert record["trace_id"] == f"{span.context.trace_id:032x}"
        assert record["span_id"] == f"{span.context.span_id:016x}"
        assert dict(span.attributes) == _without_chain(record["attributes"])
        assert span.start_time == record["time_unix_nano"] <= span.end_time
        assert span.instrumentation_scope.attributes == {"audit.schema.version": "1"}
    success, failure = audit_spans
    assert success.status.status_code is StatusCode.UNSET
    assert failure.status.status_code is StatusCode.ERROR
    assert failure.status.description == "failure: FileNotFoundError"
    assert [r["attributes"]["audit.outcome"] for r in records] == ["success", "failure"]


def test_denied_access_span_is_an_error_too(tmp_path, tracing):
    provider, exporter = tracing
    secret = tmp_path / "secret.csv"
    with audited_pipeline(tmp_path, AuditConfig(spans=True), tracer_provider=provider) as audited:
        import otel_audit

        otel_audit.record_access(secret.as_uri(), "read", outcome="denied", error_type="PolicyRefused")
        records = audited.records()
    (span,) = exporter.get_finished_spans()
    assert span.name == "audit read otel_audit.record_access"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "denied: PolicyRefused"
    assert records[0]["span_id"] == f"{span.context.span_id:016x}"


def test_off_by_default_records_carry_the_callers_span(tmp_path, tracing):
    provider, exporter = tracing
    with audited_pipeline(tmp_path, AuditConfig(), tracer_provider=provider) as audited:
        (tmp_path / "present.csv").write_text("a\n1\n")
        audited.clear()
        run = _read_one_and_miss_one(tmp_path, provider.get_tracer("test"))
        records = audited.records()
    assert [s.name for s in exporter.get_finished_spans()] == ["run"]
    assert len(records) == 2
    for record in records:
        assert record["trace_id"] == f"{run.get_span_context().trace_id:032x}"
        assert record["span_id"] == f"{run.get_span_context().span_id:016x}"


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True), ("on", True),
                                             ("false", False), ("0", False), ("no", False)])
def test_spans_setting(value, expected):
    assert AuditConfig.from_env({"OTEL_PYTHON_AUDIT_SPANS": value}, strict=True).spans is expected


def test_spans_setting_rejects_other_values():
    with pytest.raises(ConfigError) as error:
        AuditConfig.from_env({"OTEL_PYTHON_AUDIT_SPANS": "sometimes"}, strict=True)
    assert str(error.value) == (
        "OTEL_PYTHON_AUDIT_SPANS='sometimes' is not accepted: not a boolean; accepted: true or false "
        "(also 1/0, yes/no, on/off). Using the default (false).")


_SCRIPT = """
from opentelemetry import trace

with trace.get_tracer("job").start_as_current_span("job"):
    open("data.csv", "w").close()
    try:
        open("missing.csv")
    except FileNotFoundError:
        pass
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_and_durable_records_reach_a_real_receiver_linked(tmp_path, request, protocol):
    """Under opentelemetry-instrument, durable delivery: the spooled record keeps its span's ids."""
    receiver = request.getfixturevalue("grpc_receiver" if protocol == "grpc" else "http_receiver")
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    env = otlp_env(receiver, protocol, OTEL_TRACES_EXPORTER="otlp", OTEL_PYTHON_AUDIT_SPANS="true",
                   OTEL_BSP_SCHEDULE_DELAY="100")
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    records = receiver.wait_for(2)
    spans = receiver.spans()
    assert [r["attributes"]["audit.resource.uri"] for r in records] == [
        (tmp_path / "data.csv").as_uri(), (tmp_path / "missing.csv").as_uri()]
    (job,) = [s for s in spans if s["name"] == "job"]
    audit_spans = [s for s in spans if s["scope"] == "otel_audit"]
    assert [s["name"] for s in audit_spans] == ["audit write builtins.open", "audit read builtins.open"]
    for record, span in zip(records, audit_spans):
        assert span["kind"] == SPAN_KIND_INTERNAL
        assert span["parent_span_id"] == job["span_id"]
        assert (record["trace_id"], record["span_id"]) == (job["trace_id"], span["span_id"])
        assert span["attributes"] == _without_chain(record["attributes"])
        assert span["resource"]["service.instance.id"] == record["resource"]["service.instance.id"]
    assert [s["status_code"] for s in audit_spans] == [STATUS_CODE_UNSET, STATUS_CODE_ERROR]
    assert audit_spans[1]["status_message"] == "failure: FileNotFoundError"


def test_a_span_carries_the_policy_decision_as_its_record_does(tmp_path, tracing):
    # allowed, would-be-denied (dry run) and denied accesses: the span has the same decision and rule
    import otel_audit

    provider, exporter = tracing
    (tmp_path / "open.csv").write_text("a\n")
    (tmp_path / "pii.csv").write_text("a\n")
    policy = tmp_path / "policy.yaml"
    for mode, outcome in (("dry-run", "success"), ("enforce", "denied")):
        policy.write_text(f"mode: {mode}\nrules:\n  - id: no-pii\n    effect: deny\n"
                          f"    match: {{resource: '{tmp_path}/pii.*'}}\n")
        with audited_pipeline(tmp_path, AuditConfig(spans=True, policy=str(policy)), tracer_provider=provider) as audited:
            audited.clear()
            exporter.clear()
            assert open(tmp_path / "open.csv").read() == "a\n"
            if outcome == "denied":
                with pytest.raises(otel_audit.AccessDenied):
                    open(tmp_path / "pii.csv")
            else:
                assert open(tmp_path / "pii.csv").read() == "a\n"
            records = audited.records()
        spans = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "otel_audit"]
        decisions = [(r["attributes"]["audit.policy.decision"], r["attributes"]["audit.policy.rule"],
                      r["attributes"]["audit.outcome"]) for r in records]
        assert decisions == [("allow", "default", "success"),
                             ("would_deny" if mode == "dry-run" else "deny", "no-pii", outcome)]
        assert [dict(s.attributes) for s in spans] == [_without_chain(r["attributes"]) for r in records]
        assert [s.status.status_code for s in spans] == [StatusCode.UNSET] + [
            StatusCode.UNSET if outcome == "success" else StatusCode.ERROR]


def _without_chain(attributes: dict) -> dict:
    """A record's attributes as its span has them: all but audit.chain.hash (the span is made before it)."""
    assert len(attributes[schema.AUDIT_CHAIN_HASH]) == 64
    return {k: v for k, v in attributes.items() if k != schema.AUDIT_CHAIN_HASH}
