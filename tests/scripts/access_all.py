"""An unchanged ML-style script, run by the e2e tests under `opentelemetry-instrument`.

It touches data and models through every access point and prints, as its
last stdout line, a JSON list of the accesses it made (what the test expects
to find on the wire), each with the line that made it.
"""

import json
import os
import pathlib
import sys
import uuid

import joblib
import pandas as pd
import torch
from opentelemetry import baggage, context, trace

import otel_audit

expected = []


def made(api, action, uri, rtype, outcome="success", error=None, enduser=None, span=None, line=None, **extra):
    frame = sys._getframe(1)
    expected.append(dict(api=api, action=action, uri=uri, type=rtype, outcome=outcome, error=error,
                         line=line or frame.f_lineno, function=frame.f_code.co_name, enduser=enduser, span=span,
                         **extra))


def main(workdir):
    data = pathlib.Path(workdir, "train.csv")
    with open(data, "w") as handle: handle.write("x,y\n1,0\n2,1\n"); made("builtins.open", "write", data.as_uri(), "data", mode="w")  # noqa: E701,E702
    frame = pd.read_csv(data); made("pandas.read_csv", "read", data.as_uri(), "data", size=data.stat().st_size)  # noqa: E702
    parquet = pathlib.Path(workdir, "train.parquet")
    frame.to_parquet(parquet); made("pandas.DataFrame.to_parquet", "write", parquet.as_uri(), "data")  # noqa: E702
    pd.read_parquet(parquet); made("pandas.read_parquet", "read", parquet.as_uri(), "data", size=parquet.stat().st_size)  # noqa: E702
    weights = pathlib.Path(workdir, "model.pt")
    torch.save({"w": torch.ones(3)}, weights); made("torch.save", "write", weights.as_uri(), "model")  # noqa: E702
    tracer = trace.get_tracer("access_all")
    with tracer.start_as_current_span("load-model") as span:
        ids = (format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x"))
        torch.load(weights, weights_only=True); made("torch.load", "read", weights.as_uri(), "model", span=ids, size=weights.stat().st_size)  # noqa: E702
    model = pathlib.Path(workdir, "clf.joblib")
    joblib.dump({"coef": [1, 2]}, model); made("joblib.dump", "write", model.as_uri(), "model")  # noqa: E702
    with otel_audit.enduser("alice@example.com"):
        joblib.load(model); made("joblib.load", "read", model.as_uri(), "model", enduser="alice@example.com", size=model.stat().st_size)  # noqa: E702
    token = context.attach(baggage.set_baggage("enduser.id", "bob"))
    try:
        pathlib.Path(data).read_text(); made("builtins.open", "read", data.as_uri(), "data", enduser="bob", mode="r", size=data.stat().st_size)  # noqa: E702
    finally:
        context.detach(token)
    missing = pathlib.Path(workdir, "missing.csv")
    call_line = sys._getframe().f_lineno + 2
    try:
        pd.read_csv(missing)
    except FileNotFoundError:
        made("pandas.read_csv", "read", missing.as_uri(), "data", outcome="failure", error="FileNotFoundError",
             line=call_line)
    else:
        raise SystemExit("read_csv of a missing file did not raise")
    otel_audit.record_access("postgres://db/public.patients", "read", api="sqlalchemy.execute"); made("sqlalchemy.execute", "read", "postgres://db/public.patients", "data")  # noqa: E702

    endpoint = os.environ.get("ACCESS_ALL_S3_ENDPOINT")
    if endpoint:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
        b = "e2e-" + uuid.uuid4().hex[:12]  # the S3 server outlives one run
        client.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_object(Bucket=b, Key="raw/data.csv", Body=b"x\n1\n"); made("s3.PutObject", "write", f"s3://{b}/raw/data.csv", "data", bucket=b, key="raw/data.csv", region="eu-west-1")  # noqa: E702
        client.get_object(Bucket=b, Key="raw/data.csv")["Body"].read(); made("s3.GetObject", "read", f"s3://{b}/raw/data.csv", "data", bucket=b, key="raw/data.csv", region="eu-west-1")  # noqa: E702
        target = pathlib.Path(workdir, "copy.csv")
        client.download_file(b, "raw/data.csv", str(target)); made("s3.download_file", "read", f"s3://{b}/raw/data.csv", "data", bucket=b, key="raw/data.csv", region="eu-west-1")  # noqa: E702
        call_line = sys._getframe().f_lineno + 2
        try:
            client.get_object(Bucket=b, Key="absent")
        except client.exceptions.NoSuchKey:
            made("s3.GetObject", "read", f"s3://{b}/absent", "data", outcome="failure", error="NoSuchKey",
                 bucket=b, key="absent", region="eu-west-1", line=call_line)


if __name__ == "__main__":
    main(sys.argv[1])
    print(json.dumps(expected))
