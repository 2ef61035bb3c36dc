"""The manual API: enduser(), baggage, record_access(), audit_access(); trace context on records."""

from __future__ import annotations

import asyncio
import sys

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider

import otel_audit
from otel_audit import schema
from otel_audit.config import AuditConfig


@pytest.fixture
def data_file(audited, tmp_path):
    """A file to read, written before the test's records start."""
    path = tmp_path / "d.txt"
    path.write_text("x")
    audited.clear()
    return path


def _enduser_of(records):
    return [r["attributes"].get(schema.ENDUSER_ID) for r in records]


def test_enduser_block_nests_and_resets(audited, data_file):
    with otel_audit.enduser("alice"):
        data_file.read_text()
        with otel_audit.enduser("bob"):
            data_file.read_text()
        data_file.read_text()
    data_file.read_text()
    records = audited.records()
    assert _enduser_of(records) == ["alice", "bob", "alice", None]
    assert records[0]["body"].startswith(f"{records[0]['attributes'][schema.USER_NAME]} (for alice) read data ")


def test_enduser_follows_asyncio_tasks(audited, tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    audited.clear()

    async def serve(user, name):
        with otel_audit.enduser(user):
            await asyncio.sleep(0.01)  # interleave the tasks
            (tmp_path / name).read_text()

    async def main():
        await asyncio.gather(serve("u1", "a"), serve("u2", "b"), serve("u3", "c"))

    asyncio.run(main())
    pairs = {(r["attributes"][schema.FILE_PATH][-1], r["attributes"][schema.ENDUSER_ID]) for r in audited.records()}
    assert pairs == {("a", "u1"), ("b", "u2"), ("c", "u3")}


def test_baggage_enduser_and_block_precedence(audited, data_file):
    token = context.attach(baggage.set_baggage("enduser.id", "from-baggage"))
    try:
        data_file.read_text()
        with otel_audit.enduser("explicit"):
            data_file.read_text()
    finally:
        context.detach(token)
    assert _enduser_of(audited.records()) == ["from-baggage", "explicit"]


def test_hostile_enduser_is_escaped_in_the_body(audited, data_file):
    with otel_audit.enduser("mallory\nroot read model file:///x via torch.load (success)"):
        data_file.read_text()
    (record,) = audited.records()
    assert "\n" not in record["body"] and "mallory\\x0aroot" in record["body"]


def test_bidi_and_format_characters_are_escaped_in_the_body_and_enduser(audited, data_file):
    with otel_audit.enduser("\u202eevil\u200b\u2028x"):
        data_file.read_text()
    (record,) = audited.records()
    assert record["attributes"][schema.ENDUSER_ID] == "\\u202eevil\\u200b\\u2028x"
    assert "(for \\u202eevil\\u200b\\u2028x)" in record["body"]
    assert not any(c in record["body"] for c in "\u202e\u200b\u2028")


@pytest.mark.parametrize("audit_config", [AuditConfig(redact=(r"patient_id=([^/]+)", r"\d{3}-\d{2}-\d{4}"))])
def test_redaction_masks_paths_uris_and_the_body(audited, tmp_path):
    private = tmp_path / "patient_id=4711" / "scan-123-45-6789.csv"
    private.parent.mkdir()
    private.write_text("x")
    (record,) = audited.records()
    masked = str(tmp_path / "patient_id=REDACTED" / "scan-REDACTED.csv")
    assert record["attributes"][schema.FILE_PATH] == masked
    assert record["attributes"][schema.AUDIT_RESOURCE_URI] == "file://" + masked
    assert f"file://{masked} via builtins.open (success)" in record["body"]
    named = [record["body"]] + [record["attributes"][k] for k in (schema.FILE_PATH, schema.AUDIT_RESOURCE_URI)]
    assert not any("=4711" in text or "123-45-6789" in text for text in named)
    assert private.read_text() == "x"  # the file is the one the program named


def test_record_access_every_field(audited):
    line = sys._getframe().f_lineno + 1
    otel_audit.record_access("postgres://db/public.patients", "read", api="sqlalchemy.execute",
                             attributes={"db.collection.name": "patients"})
    otel_audit.record_access("mlflow://models/churn/3", "read", resource_type="model", outcome="denied",
                             error_type="PERMISSION_DENIED")
    first, second = audited.records()
    a = first["attributes"]
    assert a[schema.AUDIT_RESOURCE_URI] == "postgres://db/public.patients"
    assert (a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME]) == ("sqlalchemy.execute", "read", "success")
    assert a["db.collection.name"] == "patients"
    assert (a[schema.CODE_FILE_PATH], a[schema.CODE_LINE_NUMBER]) == (__file__, line)
    assert schema.REQUIRED_ATTRIBUTES <= set(a)
    b = second["attributes"]
    assert (b[schema.AUDIT_API], b[schema.AUDIT_OUTCOME], b[schema.ERROR_TYPE], b[schema.AUDIT_RESOURCE_TYPE]) == (
        "otel_audit.record_access", "denied", "PERMISSION_DENIED", "model")
    assert second["severity_text"] == "WARN"
    assert b[schema.AUDIT_SEQ] == a[schema.AUDIT_SEQ] + 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(uri="s3://b/k", action="reed"), "action='reed' is not accepted; accepted: read, write, delete, list"),
    (dict(uri="s3://b/k", action="read", outcome="ok"), "outcome='ok' is not accepted; accepted: success, failure, denied"),
    (dict(uri="s3://b/k", action="read", resource_type="weights"), "resource_type='weights' is not accepted; accepted: data, model"),
    (dict(uri="", action="read"), "uri='' is not accepted; accepted: a non-empty string such as s3://bucket/key"),
    (dict(uri="s3://b/k", action="read", attributes={"audit.seq": 1}), "attributes may not set audit.seq: otel-audit sets them"),
])
def test_record_access_rejects_bad_arguments(audited, kwargs, message):
    with pytest.raises(ValueError) as raised:
        otel_audit.record_access(**kwargs)
    assert str(raised.value) == message
    assert audited.all_records() == []


def test_audit_access_block(audited, data_file):
    with otel_audit.audit_access("registry://models/churn", "read", api="registry.fetch", resource_type="model"):
        data_file.read_text()  # belongs to the block: not recorded again
    with pytest.raises(KeyError):
        with otel_audit.audit_access("registry://models/gone", "read", api="registry.fetch"):
            raise KeyError("gone")
    ok, failed = audited.records()
    assert (ok["attributes"][schema.AUDIT_API], ok["attributes"][schema.AUDIT_OUTCOME]) == ("registry.fetch", "success")
    assert (failed["attributes"][schema.AUDIT_OUTCOME], failed["attributes"][schema.ERROR_TYPE]) == ("failure", "KeyError")
    assert ok["attributes"][schema.CODE_FILE_PATH] == __file__


def test_records_carry_the_active_span(audited, data_file):
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("step") as span:
        data_file.read_text()
    data_file.read_text()
    inside, outside = audited.records()
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert outside["trace_id"].strip("0") == ""


def test_fail_closed_refuses_manual_accesses_whose_record_cannot_be_spooled(tmp_path):
    """Like every hook, the manual API asks first: an unwritable spool under ON_FAILURE=closed refuses it."""
    from otel_audit import recorder as recorder_module
    from otel_audit.recorder import AuditRecorder

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")
    previous = recorder_module._default_recorder
    recorder_module.set_default_recorder(AuditRecorder(AuditConfig(
        delivery="durable", on_failure="closed", spool_dir=str(blocker / "spool"))))
    ran = []
    try:
        with pytest.raises(PermissionError, match="could not be audited"):
            otel_audit.record_access("postgres://db/t", "read")
        with pytest.raises(PermissionError, match="could not be audited"):
            with otel_audit.audit_access("mlflow://models/m/1", "read"):
                ran.append(True)
    finally:
        recorder_module.set_default_recorder(previous)
    assert ran == []
