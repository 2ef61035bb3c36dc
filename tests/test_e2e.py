"""End to end: an unchanged script under the real `opentelemetry-instrument`, exporting over OTLP
gRPC and HTTP to a receiver this test starts (and to the embedded sink and the console),
every field of schema v1 checked on what the exporter actually sent."""

from __future__ import annotations

import getpass
import json
import os
import re
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

import otel_audit
from conftest import BIN, instrumented_env, otel_audit_lines, otlp_env, records_from_jsonl, run_instrumented
from otel_audit import schema

SCRIPT = Path(__file__).parent / "scripts" / "access_all.py"


@pytest.fixture
def s3_endpoint(moto_server):
    return moto_server


def _s3_env(endpoint: str) -> dict:
    return {
        "ACCESS_ALL_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


def _run(tmp_path, env) -> tuple[list[dict], "subprocess.CompletedProcess"]:  # noqa: F821
    result = run_instrumented(SCRIPT, str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert otel_audit_lines(result.stderr) == [], result.stderr  # no internal error, no config complaint
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def check_records(records: list[dict], expected: list[dict]) -> None:
    """Every field of schema v1, record by record, in order."""
    assert len(records) == len(expected), [r["body"] for r in records]
    records = sorted(records, key=lambda r: r["attributes"][schema.AUDIT_SEQ])
    # audit.seq 1 is otel-audit's lifecycle record "started" (left out here): the accesses follow without a gap
    assert [r["attributes"][schema.AUDIT_SEQ] for r in records] == list(range(2, len(expected) + 2))
    pids = {r["attributes"][schema.PROCESS_PID] for r in records}
    assert len(pids) == 1 and pids != {os.getpid()}
    instance_ids = {r["resource"]["service.instance.id"] for r in records}
    assert len(instance_ids) == 1
    uuid.UUID(instance_ids.pop())
    record_ids = [r["attributes"][schema.AUDIT_RECORD_ID] for r in records]
    assert len(set(record_ids)) == len(records)
    prefix = record_ids[0].split("-")[0]
    assert re.fullmatch(r"[0-9a-f]{32}", prefix)
    assert record_ids == [f"{prefix}-{seq}" for seq in range(2, len(records) + 2)]
    for record, want in zip(records, expected):
        a = record["attributes"]
        assert record["event_name"] == schema.EVENT_NAME
        assert record["resource"]["service.name"] == "audit-test"
        assert record["scope"] == {"name": "otel_audit", "version": otel_audit.__version__,
                                   "attributes": {"audit.schema.version": "1"}}
        failed = want["outcome"] != "success"
        assert (record["severity_number"], record["severity_text"]) == ((13, "WARN") if failed else (9, "INFO"))
        assert 0 < record["time_unix_nano"] <= record["observed_time_unix_nano"]
        assert a[schema.AUDIT_API] == want["api"]
        assert a[schema.AUDIT_ACTION] == want["action"]
        assert a[schema.AUDIT_OUTCOME] == want["outcome"]
        assert a[schema.AUDIT_RESOURCE_URI] == want["uri"]
        assert a[schema.AUDIT_RESOURCE_TYPE] == want["type"]
        assert a[schema.USER_NAME] == getpass.getuser()
        assert a[schema.USER_ID] == str(os.getuid())
        assert a[schema.CODE_FILE_PATH] == str(SCRIPT)
        assert a[schema.CODE_LINE_NUMBER] == want["line"], (want, a)
        assert a[schema.CODE_FUNCTION_NAME] == want["function"]
        assert a.get(schema.ERROR_TYPE) == want["error"]
        assert a.get(schema.ENDUSER_ID) == want["enduser"]
        assert a.get(schema.AUDIT_MODE) == want.get("mode")
        assert a.get(schema.FILE_SIZE) == want.get("size")
        if want["uri"].startswith("file://"):
            assert Path(a[schema.FILE_PATH]).as_uri() == want["uri"]
        else:
            assert schema.FILE_PATH not in a
        if want["uri"].startswith("s3://"):
            assert a[schema.AWS_S3_BUCKET] == want["bucket"]
            assert a[schema.AWS_S3_KEY] == want["key"]
            assert a[schema.CLOUD_REGION] == want["region"]
            if want["api"] != "s3.download_file":  # one record for many requests: no single request id
                assert re.fullmatch(r"[A-Za-z0-9]{8,}", a[schema.AWS_REQUEST_ID]), a
        else:
            assert not {schema.AWS_S3_BUCKET, schema.AWS_S3_KEY, schema.CLOUD_REGION, schema.AWS_REQUEST_ID} & set(a)
        assert set(a) <= schema.ALL_ATTRIBUTES
        assert schema.REQUIRED_ATTRIBUTES <= set(a)
        if want["span"]:
            assert (record["trace_id"], record["span_id"]) == tuple(want["span"])
        else:
            assert record["trace_id"].strip("0") == "" and record["span_id"].strip("0") == ""
        principal = a[schema.USER_NAME] + (f" (for {want['enduser']})" if want["enduser"] else "")
        outcome = want["outcome"] + (f": {want['error']}" if want["error"] else "")
        assert record["body"] == (
            f"{principal} {want['action']} {want['type']} {want['uri']} via {want['api']} ({outcome})")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_every_field(tmp_path, request, s3_endpoint, protocol):
    receiver = request.getfixturevalue("grpc_receiver" if protocol == "grpc" else "http_receiver")
    expected, _ = _run(tmp_path, otlp_env(receiver, protocol, **_s3_env(s3_endpoint)))
    assert len(expected) == 15
    # the process flushed at exit: everything is there already
    check_records(receiver.records(), expected)


def test_embedded_sink_without_collector(tmp_path, s3_endpoint):
    trail = tmp_path / "trail" / "audit.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail), **_s3_env(s3_endpoint))
    expected, _ = _run(tmp_path, env)
    check_records(records_from_jsonl(trail), expected)
    assert stat.S_IMODE(trail.stat().st_mode) == 0o600
    # every line is one OTLP/JSON ExportLogsServiceRequest, as the collector's otlpjsonfile receiver reads
    for line in trail.read_text().splitlines():
        document = json.loads(line)
        assert set(document) == {"resourceLogs"}
        for scope_logs in document["resourceLogs"][0]["scopeLogs"]:
            for log in scope_logs["logRecords"]:
                assert isinstance(log["timeUnixNano"], str) and log["eventName"] in ("audit.access", "audit.lifecycle", "audit.checkpoint")
    events = [log["eventName"] for line in trail.read_text().splitlines()
              for scope_logs in json.loads(line)["resourceLogs"][0]["scopeLogs"] for log in scope_logs["logRecords"]]
    # "started", the accesses, the chain's closing checkpoint; and the trail proves itself whole
    assert events == ["audit.lifecycle"] + ["audit.access"] * len(expected) + ["audit.checkpoint"]
    verified = subprocess.run([str(BIN / "otel-audit"), "verify", str(trail)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "intact, closed" in verified.stdout, verified.stdout + verified.stderr


def test_default_sink_path_is_cwd(tmp_path):
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file")
    expected, _ = _run(tmp_path, env)
    check_records(records_from_jsonl(tmp_path / "otel-audit.jsonl"), expected)


def test_console_exporter(tmp_path):
    result = run_instrumented(SCRIPT, str(tmp_path), cwd=tmp_path, env=instrumented_env(OTEL_LOGS_EXPORTER="console"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"event_name": "audit.access"') == 11
    assert f"read data {(tmp_path / 'train.csv').as_uri()} via pandas.read_csv (success)" in result.stdout


def test_disabled_instrumentation_records_nothing(tmp_path):
    trail = tmp_path / "audit.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="otel_audit")
    expected, _ = _run(tmp_path, env)
    assert len(expected) == 11
    # No hook ran; the script's explicit otel_audit.record_access() call is the application's own
    # audit event and is still recorded.
    assert [r["attributes"][schema.AUDIT_API] for r in records_from_jsonl(trail)] == ["sqlalchemy.execute"]


def test_bad_setting_is_reported_once_and_auditing_goes_on(tmp_path):
    trail = tmp_path / "audit.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_HOOKS="open,pandsa")
    result = run_instrumented(SCRIPT, str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    messages = [line for line in result.stderr.splitlines() if line.startswith("otel-audit:")]
    assert messages == [
        "otel-audit: OTEL_PYTHON_AUDIT_HOOKS='open,pandsa' is not accepted: unknown hook 'pandsa'; accepted: "
        "'all' or comma-separated names from open, os, pandas, pyarrow, polars, numpy, h5py, pillow, sqlite3, torch, "
        "safetensors, huggingface, datasets, fsspec, joblib, boto3. Using the default (all)."
    ]
    assert len(records_from_jsonl(trail)) == 11


def test_collector_down_does_not_break_or_loop(tmp_path):
    """Nothing listens: the program still succeeds, and exporter failures do not become audit records."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = instrumented_env(
        OTEL_LOGS_EXPORTER="otlp,audit_file", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="1",
        OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "audit.jsonl"),
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
    )
    result = run_instrumented(SCRIPT, str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    records = records_from_jsonl(tmp_path / "audit.jsonl")
    audit = [r for r in records if r["event_name"] == "audit.access"]
    assert len(audit) == 11
    # the exporter's own complaints may be logged (that is the SDK's logging handler) but never as audit records
    assert all(r["scope"]["name"] != "otel_audit" or r["event_name"] == "audit.access" for r in records)


def test_crash_traceback_is_untouched(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("open('present.txt', 'w').close()\nraise SystemExit(open('missing.txt').read())\n")
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file")
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("FileNotFoundError: [Errno 2] No such file or directory: 'missing.txt'")
    assert otel_audit_lines(result.stderr) == []  # the interpreter reading source lines is not an access
    records = records_from_jsonl(tmp_path / "otel-audit.jsonl")
    assert [(r["attributes"][schema.AUDIT_ACTION], r["attributes"][schema.AUDIT_OUTCOME]) for r in records] == [
        ("write", "success"), ("read", "failure")]
