"""The examples, run as a user runs them: under the real ``opentelemetry-instrument``,
exporting OTLP over gRPC to a real receiver, against a real S3 API (moto's server).

* ``examples/train``: a training job (S3, pandas, joblib, torch) in a ``train`` trace;
  its exact audit trail, the audit spans under the job's stage spans, and an output
  identical to the uninstrumented run.
* ``examples/serve``: a model server; each request's accesses are attributed to its
  end user (header, or W3C baggage), records join the caller's trace, and they are
  delivered while the server runs, not only when it stops.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from conftest import OPENTELEMETRY_INSTRUMENT, REPO, instrumented_env, otel_audit_lines, otlp_env, run_instrumented

TRAIN_DIR = REPO / "examples" / "train"
TRAIN = TRAIN_DIR / "train.py"
SERVE_DIR = REPO / "examples" / "serve"
SERVE = SERVE_DIR / "serve.py"
REGION = "eu-west-1"
SPAN_KIND_INTERNAL, SPAN_KIND_SERVER = 1, 2  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_CODE_UNSET = 0
NO_TRACE = NO_SPAN = ""  # the OTLP encoding of no span context: empty bytes


def _line(script: Path, text: str) -> int:
    """The one line of ``script`` containing ``text``."""
    [number] = [n for n, line in enumerate(script.read_text().splitlines(), 1) if text in line]
    return number


def _by_seq(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["attributes"]["audit.seq"])


def _trail(records: list[dict]) -> list[tuple]:
    return [
        (a["audit.api"], a["audit.action"], a["audit.resource.type"], a["audit.resource.uri"], a["audit.outcome"])
        for a in (r["attributes"] for r in records)
    ]


# -- examples/train ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_s3(moto_server, tmp_path_factory):
    """A bucket of the module's own holding the raw dataset, put there by the example's make_dataset.py."""
    empty = tmp_path_factory.mktemp("aws")
    aws = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server,  # boto3 honours it: the scripts never name moto
        "AWS_CONFIG_FILE": str(empty / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(empty / "credentials"),
        "TRAIN_BUCKET": f"train-{uuid.uuid4().hex[:16]}",
    }
    seeded = subprocess.run([sys.executable, str(TRAIN_DIR / "make_dataset.py")], env=instrumented_env(**aws),
                            capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    assert seeded.stdout == f"uploaded s3://{aws['TRAIN_BUCKET']}/datasets/churn/customers.csv\n"
    client = boto3.session.Session(aws["AWS_ACCESS_KEY_ID"], aws["AWS_SECRET_ACCESS_KEY"], region_name=REGION) \
        .client("s3", endpoint_url=moto_server)
    return aws, client


@pytest.fixture(scope="module")
def plain_train(train_s3, tmp_path_factory):
    """train.py under plain ``python``: the output the instrumented runs must reproduce."""
    aws, client = train_s3
    cwd = tmp_path_factory.mktemp("plain")
    result = subprocess.run([sys.executable, str(TRAIN)], cwd=cwd, env=instrumented_env(**aws),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    published = client.list_objects_v2(Bucket=aws["TRAIN_BUCKET"], Prefix="models/")["Contents"]
    assert sorted(o["Key"] for o in published) == ["models/churn/model.pt", "models/churn/scaler.joblib"]
    return result, cwd


@pytest.mark.parametrize("spans_on", [True, False], ids=["audit-spans", "records-only"])
def test_train_job_trail_spans_and_unchanged_output(spans_on, train_s3, plain_train, grpc_receiver, tmp_path):
    aws, client = train_s3
    bucket = aws["TRAIN_BUCKET"]
    plain, plain_cwd = plain_train
    for key in ("models/churn/model.pt", "models/churn/scaler.joblib"):  # so this run must publish them again
        client.delete_object(Bucket=bucket, Key=key)

    env = otlp_env(grpc_receiver, "grpc", OTEL_SERVICE_NAME="train", OTEL_TRACES_EXPORTER="otlp",
                   OTEL_PYTHON_AUDIT_SPANS=str(spans_on).lower(), **aws)
    result = run_instrumented(TRAIN, cwd=tmp_path, env=env)

    # The job itself is unchanged: same exit, same output (loss, accuracy), same metrics file.
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain.stdout
    assert "test accuracy" in result.stdout and result.stdout.count("train loss") == 4
    assert otel_audit_lines(result.stderr) == [] and "Traceback" not in result.stderr, result.stderr
    run = tmp_path.resolve() / "run"
    assert (run / "metrics.json").read_text() == (plain_cwd / "run" / "metrics.json").read_text()

    # The model really was published to S3 by this run.
    for name in ("model.pt", "scaler.joblib"):
        stored = client.get_object(Bucket=bucket, Key=f"models/churn/{name}")["Body"].read()
        assert stored == (run / name).read_bytes()

    # The audit trail: every access, in order, each from its line of train.py; nothing else
    # (the imports of pandas, torch, sklearn read files too: not the job's accesses).
    s3, local = f"s3://{bucket}", run.as_uri()
    expected = [
        # (api, action, type, uri, outcome), stage span, function, line marker
        (("s3.download_file", "read", "data", f"{s3}/datasets/churn/customers.csv", "success"),
         "fetch-data", "fetch_dataset", "s3.download_file("),
        (("pandas.read_csv", "read", "data", f"{local}/customers.csv", "success"),
         "fetch-data", "fetch_dataset", "pd.read_csv("),
        (("joblib.dump", "write", "model", f"{local}/scaler.joblib", "success"),
         "preprocess", "fit_scaler", "joblib.dump("),
        (("torch.save", "write", "model", f"{local}/model.pt", "success"),
         "fit", "train_model", "torch.save("),
        (("joblib.load", "read", "model", f"{local}/scaler.joblib", "success"),
         "evaluate", "evaluate", "joblib.load("),
        (("torch.load", "read", "model", f"{local}/model.pt", "success"),
         "evaluate", "evaluate", "torch.load("),
        (("builtins.open", "write", "data", f"{local}/metrics.json", "success"),
         "evaluate", "evaluate", 'open(workdir / "metrics.json"'),
        (("s3.upload_file", "write", "model", f"{s3}/models/churn/model.pt", "success"),
         "publish", "publish", "s3.upload_file("),
        (("s3.upload_file", "write", "model", f"{s3}/models/churn/scaler.joblib", "success"),
         "publish", "publish", "s3.upload_file("),
    ]
    records = _by_seq(grpc_receiver.wait_for(len(expected), timeout=15))
    assert _trail(records) == [trail for trail, *_ in expected]
    assert [r["attributes"]["audit.seq"] for r in records] == list(range(2, len(expected) + 2))  # 1: "started"
    for record, (_, _, function, marker) in zip(records, expected):
        attributes = record["attributes"]
        assert (attributes["code.file.path"], attributes["code.function.name"], attributes["code.line.number"]) \
            == (str(TRAIN), function, _line(TRAIN, marker))
        assert record["resource"]["service.name"] == "train"
        assert "enduser.id" not in attributes

    # The trace: a `train` root span, one child per stage, and every record in that trace.
    spans = grpc_receiver.spans()
    by_id = {span["span_id"]: span for span in spans}
    [root] = [span for span in spans if span["name"] == "train"]
    assert root["parent_span_id"] == ""
    job_spans = [span for span in spans if span["scope"] == "__main__"]
    assert sorted(span["name"] for span in job_spans) == sorted(
        ["train", "fetch-data", "preprocess", "fit", "evaluate", "publish"])
    stages = {span["name"]: span for span in job_spans if span is not root}
    assert all(span["parent_span_id"] == root["span_id"] and span["trace_id"] == root["trace_id"]
               for span in stages.values())
    assert all(record["trace_id"] == root["trace_id"] for record in records)

    audit_spans = [span for span in spans if span["scope"] == "otel_audit"]
    if not spans_on:
        # Records only: each record carries the id of the stage span it happened in.
        assert audit_spans == [] and len(spans) == len(job_spans)
        assert [record["span_id"] for record in records] == [stages[stage]["span_id"] for _, stage, *_ in expected]
        return
    # Audit spans: one per record, under the stage span, and the record carries its ids.
    assert len(audit_spans) == len(records) and len(spans) == len(job_spans) + len(records)
    for record, (trail, stage, *_) in zip(records, expected):
        span = by_id[record["span_id"]]
        api, action = trail[0], trail[1]
        assert span["scope"] == "otel_audit"
        assert span["name"] == f"audit {action} {api}"
        assert span["kind"] == SPAN_KIND_INTERNAL and span["status_code"] == STATUS_CODE_UNSET
        assert span["trace_id"] == record["trace_id"] == root["trace_id"]
        assert span["parent_span_id"] == stages[stage]["span_id"]
        assert span["attributes"] == {k: v for k, v in record["attributes"].items() if k != "audit.chain.hash"}  # (made before the chain hash)
        assert span["start_time_unix_nano"] == record["time_unix_nano"] <= span["end_time_unix_nano"]
    assert len({record["span_id"] for record in records}) == len(records)



# -- examples/serve ----------------------------------------------------------------------------

CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def _get(base: str, query: str, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}/predict{query}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def test_serve_attributes_each_access_to_its_end_user(tmp_path, grpc_receiver):
    made = subprocess.run([sys.executable, str(SERVE_DIR / "make_demo_files.py")], cwd=tmp_path,
                          env=instrumented_env(), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    env = otlp_env(grpc_receiver, "grpc", OTEL_SERVICE_NAME="serve", OTEL_TRACES_EXPORTER="otlp")
    server = subprocess.Popen([OPENTELEMETRY_INSTRUMENT, sys.executable, str(SERVE), "--port", "0"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith("serving on http://127.0.0.1:"), first
        base = first.split()[-1]

        # Delivered while the server runs (the durable shipper works in the background):
        # the startup load of the default model, before any request.
        startup = grpc_receiver.wait_for(1, timeout=20)
        assert len(startup) == 1 and server.poll() is None

        alice = _get(base, "", {"X-End-User": "alice"})
        bob = _get(base, "?model=v2", {"X-End-User": "bob"})
        # no header: the end user comes from the caller's baggage, and the caller's trace is joined
        carol = _get(base, "?model=v2", {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                                         "baggage": "enduser.id=carol"})
        unknown_model = _get(base, "?model=v9", {"X-End-User": "alice"})
        anonymous = _get(base, "", {})
        traversal = _get(base, "?model=../../secrets", {"X-End-User": "alice"})

        running = grpc_receiver.wait_for(6, timeout=20)
        assert len(running) == 6 and server.poll() is None  # all of them, the server still up
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
    assert server.returncode == 0, err
    assert out == "stopped\n"  # after the "serving on" line
    assert otel_audit_lines(err) == [] and "Traceback" not in err, err

    def accounts(user):
        return [f"{user}-{i}" for i in (1, 2, 3)]

    assert alice[0] == 200 and (alice[1]["user"], alice[1]["model"]) == ("alice", "v1")
    assert list(alice[1]["churn_risk"]) == accounts("alice")
    assert bob[0] == 200 and (bob[1]["user"], bob[1]["model"]) == ("bob", "v2")
    assert list(bob[1]["churn_risk"]) == accounts("bob")
    assert carol[0] == 200 and (carol[1]["user"], carol[1]["model"]) == ("carol", "v2")
    assert list(carol[1]["churn_risk"]) == accounts("carol")
    assert all(0 <= risk <= 1 for reply in (alice, bob, carol) for risk in reply[1]["churn_risk"].values())
    assert unknown_model == (404, {"error": "no model version v9"})
    assert anonymous[0] == 401 and traversal[0] == 400  # refused before touching any file: no record

    # Exactly these accesses, each for its end user; the startup load for nobody.
    records = _by_seq(grpc_receiver.records())
    models, features = (tmp_path.resolve() / "models").as_uri(), (tmp_path.resolve() / "features").as_uri()
    assert [(*trail, r["attributes"].get("enduser.id"), r["attributes"].get("error.type"))
            for trail, r in zip(_trail(records), records)] == [
        ("joblib.load", "read", "model", f"{models}/churn-v1.joblib", "success", None, None),
        ("pandas.read_csv", "read", "data", f"{features}/alice.csv", "success", "alice", None),
        ("joblib.load", "read", "model", f"{models}/churn-v2.joblib", "success", "bob", None),
        ("pandas.read_csv", "read", "data", f"{features}/bob.csv", "success", "bob", None),
        ("pandas.read_csv", "read", "data", f"{features}/carol.csv", "success", "carol", None),
        ("joblib.load", "read", "model", f"{models}/churn-v9.joblib", "failure", "alice", "FileNotFoundError"),
    ]
    assert [r["severity_text"] for r in records] == ["INFO"] * 5 + ["WARN"]
    model_line, features_line = _line(SERVE, "joblib.load("), _line(SERVE, "pd.read_csv(")
    lines = (model_line, features_line, model_line, features_line, features_line, model_line)
    assert [(r["attributes"]["code.file.path"], r["attributes"]["code.line.number"]) for r in records] \
        == [(str(SERVE), line) for line in lines]

    # Traces: one server span per request; each request's records carry its span, carol's the caller's trace.
    startup_record, *request_records = records
    assert (startup_record["trace_id"], startup_record["span_id"]) == (NO_TRACE, NO_SPAN)
    spans = {span["span_id"]: span for span in grpc_receiver.spans()}
    assert [span["name"] for span in spans.values()] == ["GET /predict"] * 6
    assert all(span["kind"] == SPAN_KIND_SERVER for span in spans.values())
    assert sorted(span["attributes"]["http.response.status_code"] for span in spans.values()) \
        == [200, 200, 200, 400, 401, 404]
    alice_span, bob_span, bob_span_again, carol_span, unknown_span = (spans[r["span_id"]] for r in request_records)
    assert bob_span is bob_span_again and len({id(alice_span), id(bob_span), id(carol_span), id(unknown_span)}) == 4
    assert all(record["trace_id"] == spans[record["span_id"]]["trace_id"] for record in request_records)
    assert carol_span["trace_id"] == CALLER_TRACE and carol_span["parent_span_id"] == CALLER_SPAN
    assert alice_span["parent_span_id"] == "" and alice_span["trace_id"] != CALLER_TRACE
    request_spans = (alice_span, bob_span, carol_span, unknown_span)
    assert [span["attributes"]["http.response.status_code"] for span in request_spans] == [200, 200, 200, 404]
