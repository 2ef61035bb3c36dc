"""boto3 / botocore S3 against a real S3 API over HTTP (moto in server mode).

Every S3 object operation is one record; a managed transfer (``download_file``
and friends) is one record however many ranged requests s3transfer makes on
its worker threads; errors carry S3's code; what the call returns or raises is
untouched.  Nothing of boto3/botocore is mocked: moto answers real HTTP
requests on 127.0.0.1, and the tests observe what was sent with botocore's own
event hooks (``after-call.s3.<Operation>``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import types
import urllib.request
import uuid

import boto3
import boto3.s3.inject
import botocore.client
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit import AuditInstrumentor, diagnostics, schema
from otel_audit.config import AuditConfig
from otel_audit.hooks.boto3_hook import TRANSFERS, classify_s3_error

REGION = "eu-west-1"
MiB = 1024 * 1024
S3_ATTRIBUTES = {schema.AWS_S3_BUCKET, schema.AWS_S3_KEY, schema.CLOUD_REGION}
# s3transfer splits what is larger than the threshold into chunksize ranges, on max_concurrency threads
MULTIPART = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)


def _line() -> int:
    """The caller's current line."""
    return sys._getframe(1).f_lineno


def _original(owner, attribute):
    """What otel-audit wrapped: the object the library itself defines."""
    return vars(owner)[attribute].__wrapped__


# -- the S3 service --------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_session(moto_server, tmp_path_factory):
    """Fake credentials from the environment (and no ~/.aws), and one boto3 session for the module
    (it caches the service models it loads; each test's clients are still made in the test)."""
    empty = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        yield boto3.session.Session(region_name=REGION)


def _config(**kwargs) -> Config:
    return Config(s3={"addressing_style": "path"}, **kwargs)


class S3:
    """boto3 pointed at the moto server, with a bucket of the test's own."""

    def __init__(self, session, endpoint: str):
        self.session = session
        self.endpoint = endpoint
        self.client = self.make_client()
        self.resource = session.resource("s3", endpoint_url=endpoint, config=_config())
        self.bucket = f"audit-{uuid.uuid4().hex[:20]}"
        self.client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.requests: list[tuple[str, int]] = []  # (operation, thread id) of each S3 answer
        for client in (self.client, self.resource.meta.client):
            client.meta.events.register("after-call.s3", self._count)

    def make_client(self, **kwargs):
        return self.session.client("s3", endpoint_url=self.endpoint, config=_config(), **kwargs)

    def _count(self, model, **_):
        self.requests.append((model.name, threading.get_ident()))

    def operations(self) -> list[str]:
        return [name for name, _ in self.requests]

    def put(self, key: str, data: bytes) -> dict:
        response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        self.requests.clear()
        return response

    def get(self, key: str) -> bytes:
        """The stored object, read without otel-audit."""
        response = _original(botocore.client.BaseClient, "_make_api_call")(
            self.client, "GetObject", {"Bucket": self.bucket, "Key": key}
        )
        return response["Body"].read()


@pytest.fixture
def s3(audited, aws_session, moto_server) -> S3:
    """Clients made while instrumented, so they have the transfer wrappers (see boto3_hook)."""
    return S3(aws_session, moto_server)


@pytest.fixture(autouse=True)
def no_internal_errors():
    """otel-audit swallows its own errors (the user's call goes on); here there must be none."""
    diagnostics._forget()
    yield
    assert not diagnostics._reported


def _one(records) -> dict:
    assert len(records) == 1, [r["body"] for r in records]
    return records[0]["attributes"]


def _check_s3(a: dict, s3: S3, key: str | None, *, api: str, action: str, line: int, function: str) -> None:
    uri = f"s3://{s3.bucket}/{key or ''}"
    assert a[schema.AUDIT_API] == api
    assert a[schema.AUDIT_ACTION] == action
    assert a[schema.AUDIT_RESOURCE_URI] == uri
    assert a[schema.AUDIT_RESOURCE_TYPE] == "data"
    assert a[schema.AWS_S3_BUCKET] == s3.bucket
    if key is None:
        assert schema.AWS_S3_KEY not in a
    else:
        assert a[schema.AWS_S3_KEY] == key
    assert a[schema.CLOUD_REGION] == REGION
    assert a[schema.CODE_FILE_PATH] == __file__
    assert a[schema.CODE_LINE_NUMBER] == line
    assert a[schema.CODE_FUNCTION_NAME] == function
    assert schema.FILE_PATH not in a and schema.FILE_SIZE not in a


# -- object operations -----------------------------------------------------------


def test_get_object_via_client_every_field(audited, s3):
    data = b"a,b\n1,2\n"
    put = s3.put("data/train.csv", data)
    audited.clear()

    response = s3.client.get_object(Bucket=s3.bucket, Key="data/train.csv")
    line = _line() - 1
    assert response["Body"].read() == data
    assert response["ETag"] == put["ETag"] and response["ContentLength"] == len(data)

    records = audited.all_records()
    a = _one(records)
    _check_s3(a, s3, "data/train.csv", api="s3.GetObject", action="read", line=line,
              function="test_get_object_via_client_every_field")
    assert a[schema.AUDIT_OUTCOME] == "success"
    assert a[schema.AWS_REQUEST_ID] == response["ResponseMetadata"]["RequestId"] != ""
    assert a[schema.PROCESS_PID] == os.getpid()
    assert set(a) == schema.REQUIRED_ATTRIBUTES | {schema.AUDIT_CHAIN_HASH} | S3_ATTRIBUTES | {schema.AWS_REQUEST_ID}
    record = records[0]
    assert record["event_name"] == "audit.access"
    assert record["severity_text"] == "INFO" and record["severity_number"] == 9
    assert record["body"] == (
        f"{a[schema.USER_NAME]} read data s3://{s3.bucket}/data/train.csv via s3.GetObject (success)"
    )
    assert s3.operations() == ["GetObject"]


@pytest.mark.parametrize("audit_config", [AuditConfig(redact=(r"ssn=([^/]+)",))])
def test_redaction_masks_the_key_in_uri_key_and_body(audited, s3):
    key = "patients/ssn=123-45-6789/part-0.csv"
    s3.put(key, b"a,b\n")
    audited.clear()
    body = s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    assert body == b"a,b\n"  # the access itself is untouched
    (record,) = audited.records()
    a = record["attributes"]
    assert a[schema.AUDIT_RESOURCE_URI] == f"s3://{s3.bucket}/patients/ssn=REDACTED/part-0.csv"
    assert a[schema.AWS_S3_KEY] == "patients/ssn=REDACTED/part-0.csv"
    assert f"s3://{s3.bucket}/patients/ssn=REDACTED/part-0.csv via s3.GetObject (success)" in record["body"]
    assert "123-45-6789" not in json.dumps([record["body"], record["attributes"]])


def test_get_object_returns_what_botocore_returns(audited, s3):
    s3.put("k.bin", b"\x00\xffpayload")
    reference = _original(botocore.client.BaseClient, "_make_api_call")(
        s3.client, "GetObject", {"Bucket": s3.bucket, "Key": "k.bin"}
    )
    audited.clear()
    response = s3.client.get_object(Bucket=s3.bucket, Key="k.bin")
    assert set(response) == set(reference)
    for field in ("ETag", "ContentLength", "ContentType", "LastModified", "Metadata"):
        assert response[field] == reference[field], field
    assert type(response["Body"]) is type(reference["Body"])
    assert response["Body"].read() == reference["Body"].read() == b"\x00\xffpayload"
    assert len(audited.all_records()) == 1


def test_get_object_via_resource(audited, s3):
    s3.put("data/x.json", b"{}")
    audited.clear()

    body = s3.resource.Object(s3.bucket, "data/x.json").get()["Body"].read()
    line = _line() - 1
    assert body == b"{}"

    a = _one(audited.all_records())
    _check_s3(a, s3, "data/x.json", api="s3.GetObject", action="read", line=line,
              function="test_get_object_via_resource")
    assert a[schema.AUDIT_OUTCOME] == "success" and a[schema.AWS_REQUEST_ID]


def test_put_delete_list_actions(audited, s3):
    calls = []
    s3.client.put_object(Bucket=s3.bucket, Key="data/a.csv", Body=b"a")
    calls.append(("s3.PutObject", "write", "data/a.csv", _line() - 1))
    s3.resource.Object(s3.bucket, "data/b.csv").put(Body=b"b")
    calls.append(("s3.PutObject", "write", "data/b.csv", _line() - 1))
    listed = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="data/")
    calls.append(("s3.ListObjectsV2", "list", "data/", _line() - 1))
    everything = s3.client.list_objects_v2(Bucket=s3.bucket)
    calls.append(("s3.ListObjectsV2", "list", None, _line() - 1))
    v1 = s3.client.list_objects(Bucket=s3.bucket, Prefix="data/b")
    calls.append(("s3.ListObjects", "list", "data/b", _line() - 1))
    s3.client.delete_object(Bucket=s3.bucket, Key="data/a.csv")
    calls.append(("s3.DeleteObject", "delete", "data/a.csv", _line() - 1))
    left = list(s3.resource.Bucket(s3.bucket).objects.all())  # ListObjects, no prefix
    calls.append(("s3.ListObjects", "list", None, _line() - 1))

    assert [o["Key"] for o in listed["Contents"]] == ["data/a.csv", "data/b.csv"]
    assert [o["Key"] for o in everything["Contents"]] == ["data/a.csv", "data/b.csv"]
    assert [o["Key"] for o in v1["Contents"]] == ["data/b.csv"]
    assert [o.key for o in left] == ["data/b.csv"]

    records = audited.all_records()
    assert len(records) == len(calls), [r["body"] for r in records]
    for record, (api, action, key, line) in zip(records, calls):
        a = record["attributes"]
        _check_s3(a, s3, key, api=api, action=action, line=line, function="test_put_delete_list_actions")
        assert a[schema.AUDIT_OUTCOME] == "success" and a[schema.AWS_REQUEST_ID]
    assert s3.operations() == ["PutObject", "PutObject", "ListObjectsV2", "ListObjectsV2", "ListObjects",
                               "DeleteObject", "ListObjects"]


def test_paginated_list_is_one_record_per_page(audited, s3):
    for name in ("p/1", "p/2", "p/3"):
        s3.put(name, b"x")
    audited.clear()
    pages = list(s3.client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix="p/", PaginationConfig={"PageSize": 2}))
    line = _line() - 2
    assert [[o["Key"] for o in page["Contents"]] for page in pages] == [["p/1", "p/2"], ["p/3"]]
    records = audited.all_records()
    assert len(records) == 2
    for record in records:
        _check_s3(record["attributes"], s3, "p/", api="s3.ListObjectsV2", action="list", line=line,
                  function="test_paginated_list_is_one_record_per_page")


def test_model_keys_are_models(audited, s3):
    s3.client.put_object(Bucket=s3.bucket, Key="models/net.safetensors", Body=b"w")
    a = _one(audited.all_records())
    assert a[schema.AUDIT_RESOURCE_TYPE] == "model"
    assert a[schema.AUDIT_RESOURCE_URI] == f"s3://{s3.bucket}/models/net.safetensors"


def test_head_object_and_other_services_are_not_recorded(audited, s3, moto_server):
    s3.put("k", b"v")
    audited.clear()
    head = s3.client.head_object(Bucket=s3.bucket, Key="k")
    s3.resource.Object(s3.bucket, "k").load()  # HeadObject too
    s3.client.list_buckets()
    s3.client.get_bucket_location(Bucket=s3.bucket)
    iam = s3.session.client("iam", endpoint_url=moto_server)
    iam.list_users()
    assert head["ContentLength"] == 1
    assert s3.operations() == ["HeadObject", "HeadObject", "ListBuckets", "GetBucketLocation"]
    assert audited.all_records() == []


def test_delete_objects_is_one_record_per_key_each_with_its_own_outcome(audited, s3, moto_server):
    for key in ("d/1.csv", "d/2.csv"):
        s3.put(key, b"x")
    audited.clear()
    keys = ["d/1.csv", "d/2.csv", "d/never-existed.csv"]
    response = s3.client.delete_objects(Bucket=s3.bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    line = _line() - 1
    assert sorted(d["Key"] for d in response["Deleted"]) == sorted(keys)  # S3 deletes what is not there, too
    records = audited.all_records()
    assert len(records) == 3, [r["body"] for r in records]
    for record, key in zip(records, keys):
        a = record["attributes"]
        _check_s3(a, s3, key, api="s3.DeleteObjects", action="delete", line=line,
                  function="test_delete_objects_is_one_record_per_key_each_with_its_own_outcome")
        assert a[schema.AUDIT_OUTCOME] == "success" and a[schema.AWS_REQUEST_ID] == response["ResponseMetadata"]["RequestId"]
    assert s3.operations() == ["DeleteObjects"]


def test_a_key_delete_objects_could_not_delete_is_a_failure_record(audited, s3):
    from otel_audit.hooks.boto3_hook import _after_api_call

    # moto deletes every key it is asked to, so the Errors entry S3 returns for one key is given here
    attributes = {schema.AUDIT_API: "s3.DeleteObjects", schema.AWS_S3_KEY: "locked.csv"}
    answer = {"ResponseMetadata": {"RequestId": "r1"}, "Deleted": [{"Key": "ok.csv"}],
              "Errors": [{"Key": "locked.csv", "Code": "AccessDenied", "Message": "Access Denied"}]}
    assert _after_api_call(attributes, answer) == ("denied", "AccessDenied")
    assert _after_api_call({schema.AUDIT_API: "s3.DeleteObjects", schema.AWS_S3_KEY: "ok.csv"}, answer) is None


def test_copy_object_records_the_source_read_and_the_destination_write(audited, s3):
    s3.put("src/a.csv", b"copied")
    audited.clear()
    s3.client.copy_object(Bucket=s3.bucket, Key="dst/a.csv", CopySource={"Bucket": s3.bucket, "Key": "src/a.csv"})
    first = _line() - 1
    s3.client.copy_object(Bucket=s3.bucket, Key="dst/b.csv", CopySource=f"{s3.bucket}/src/a.csv")
    second = _line() - 1
    s3.client.copy(CopySource={"Bucket": s3.bucket, "Key": "src/a.csv"}, Bucket=s3.bucket, Key="dst/c.csv")
    managed = _line() - 1
    records = [r["attributes"] for r in audited.all_records()]
    assert len(records) == 6, records
    expected = [("s3.CopyObject", "read", "src/a.csv", first), ("s3.CopyObject", "write", "dst/a.csv", first),
                ("s3.CopyObject", "read", "src/a.csv", second), ("s3.CopyObject", "write", "dst/b.csv", second),
                ("s3.copy", "read", "src/a.csv", managed), ("s3.copy", "write", "dst/c.csv", managed)]
    for a, (api, action, key, line) in zip(records, expected):
        _check_s3(a, s3, key, api=api, action=action, line=line,
                  function="test_copy_object_records_the_source_read_and_the_destination_write")
        assert a[schema.AUDIT_OUTCOME] == "success"
    assert [s3.get(f"dst/{n}.csv") for n in "abc"] == [b"copied"] * 3


def test_multipart_upload_by_hand_is_one_record_when_it_completes(audited, s3):
    s3.put("src/part.bin", b"p" * (5 * MiB))
    audited.clear()
    upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="big/out.bin")
    part1 = s3.client.upload_part(Bucket=s3.bucket, Key="big/out.bin", UploadId=upload["UploadId"], PartNumber=1,
                                  Body=b"x" * (5 * MiB))
    part2 = s3.client.upload_part_copy(Bucket=s3.bucket, Key="big/out.bin", UploadId=upload["UploadId"], PartNumber=2,
                                       CopySource={"Bucket": s3.bucket, "Key": "src/part.bin"})
    copy_line = _line() - 2
    s3.client.complete_multipart_upload(
        Bucket=s3.bucket, Key="big/out.bin", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part1["ETag"]},
                                   {"PartNumber": 2, "ETag": part2["CopyPartResult"]["ETag"]}]})
    complete_line = _line() - 4
    assert s3.operations() == ["CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload"]
    records = [r["attributes"] for r in audited.all_records()]
    assert len(records) == 2, records
    function = "test_multipart_upload_by_hand_is_one_record_when_it_completes"
    _check_s3(records[0], s3, "src/part.bin", api="s3.UploadPartCopy", action="read", line=copy_line, function=function)
    _check_s3(records[1], s3, "big/out.bin", api="s3.CompleteMultipartUpload", action="write", line=complete_line,
              function=function)
    assert s3.get("big/out.bin") == b"x" * (5 * MiB) + b"p" * (5 * MiB)


# -- managed transfers -----------------------------------------------------------


def test_multipart_download_file_is_one_record(audited, s3, tmp_path):
    data = os.urandom(20 * MiB)
    s3.put("big/weights.bin", data)
    audited.clear()
    target = tmp_path / "weights.bin"

    s3.client.download_file(s3.bucket, "big/weights.bin", str(target), Config=MULTIPART)
    line = _line() - 1

    # What the audit says: one read of the object, by this line.  The four ranged GETs on
    # s3transfer's worker threads, and the temporary file its IO thread writes, belong to it.
    records = audited.all_records()
    a = _one(records)
    _check_s3(a, s3, "big/weights.bin", api="s3.download_file", action="read", line=line,
              function="test_multipart_download_file_is_one_record")
    assert a[schema.AUDIT_OUTCOME] == "success"
    assert set(a) == schema.REQUIRED_ATTRIBUTES | {schema.AUDIT_CHAIN_HASH} | S3_ATTRIBUTES
    assert records[0]["body"] == (
        f"{a[schema.USER_NAME]} read data s3://{s3.bucket}/big/weights.bin via s3.download_file (success)"
    )
    # What S3 saw: one HeadObject from the submission thread, then ranged GetObjects, none on this thread.
    assert s3.operations() == ["HeadObject"] + ["GetObject"] * 4
    get_threads = {thread for name, thread in s3.requests if name == "GetObject"}
    assert threading.get_ident() not in get_threads
    assert target.read_bytes() == data
    assert sorted(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_without_context_propagation_ranged_gets_are_separate(audited, s3, tmp_path):
    """The counterfactual: with the thread pool's submit unpatched (the threads hook), s3transfer's worker
    threads do not know they serve download_file, so each ranged GET, and the temporary file, is recorded
    on its own."""
    data = os.urandom(15 * MiB)
    s3.put("big.bin", data)
    audited.clear()
    patched_submit = vars(concurrent.futures.ThreadPoolExecutor)["submit"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", patched_submit.__wrapped__)
        s3.client.download_file(s3.bucket, "big.bin", str(tmp_path / "big.bin"), Config=MULTIPART)
        line = _line() - 1
    assert vars(concurrent.futures.ThreadPoolExecutor)["submit"] is patched_submit

    assert s3.operations() == ["HeadObject"] + ["GetObject"] * 3
    by_api: dict[str, list[dict]] = {}
    for record in audited.all_records():
        by_api.setdefault(record["attributes"][schema.AUDIT_API], []).append(record["attributes"])
    assert {api: len(records) for api, records in by_api.items()} == {
        "s3.download_file": 1, "s3.GetObject": 3, "builtins.open": 1}
    assert by_api["s3.download_file"][0][schema.CODE_LINE_NUMBER] == line
    # A worker thread has no frame of the user's: the GETs are attributed to botocore.
    for get in by_api["s3.GetObject"]:
        assert get[schema.AUDIT_RESOURCE_URI] == f"s3://{s3.bucket}/big.bin"
        assert get[schema.CODE_FILE_PATH] == botocore.client.__file__
    temporary = by_api["builtins.open"][0]
    assert temporary[schema.AUDIT_ACTION] == "write"
    assert temporary[schema.FILE_PATH].startswith(f"{tmp_path}/big.bin.")
    assert (tmp_path / "big.bin").read_bytes() == data


def test_concurrent_transfers_from_user_threads_are_one_record_each(audited, s3, tmp_path):
    first, second = os.urandom(6 * MiB), os.urandom(6 * MiB)
    s3.put("first.bin", first)
    s3.put("second.bin", second)
    audited.clear()

    def fetch(key):
        s3.client.download_file(s3.bucket, key, str(tmp_path / key), Config=MULTIPART)

    line = _line() - 2
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(fetch, ["first.bin", "second.bin"]))

    records = sorted(audited.all_records(), key=lambda r: r["attributes"][schema.AWS_S3_KEY])
    assert len(records) == 2, [r["body"] for r in records]
    for record, key in zip(records, ["first.bin", "second.bin"]):
        _check_s3(record["attributes"], s3, key, api="s3.download_file", action="read", line=line, function="fetch")
    assert sorted(s3.operations()) == ["GetObject"] * 4 + ["HeadObject"] * 2
    assert (tmp_path / "first.bin").read_bytes() == first and (tmp_path / "second.bin").read_bytes() == second


def test_unthreaded_transfer_is_one_record(audited, s3, tmp_path):
    data = os.urandom(6 * MiB)
    s3.put("big.bin", data)
    audited.clear()
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, use_threads=False)
    s3.client.download_file(s3.bucket, "big.bin", str(tmp_path / "big.bin"), Config=config)
    line = _line() - 1
    assert {thread for _, thread in s3.requests} == {threading.get_ident()}
    assert s3.operations() == ["HeadObject", "GetObject", "GetObject"]
    _check_s3(_one(audited.all_records()), s3, "big.bin", api="s3.download_file", action="read", line=line,
              function="test_unthreaded_transfer_is_one_record")
    assert (tmp_path / "big.bin").read_bytes() == data


def test_transfer_forms_are_one_record_each(audited, s3, tmp_path):
    s3.put("obj.txt", b"content")
    (tmp_path / "up.txt").write_bytes(b"uploaded")
    audited.clear()
    bucket = s3.resource.Bucket(s3.bucket)
    obj = s3.resource.Object(s3.bucket, "obj.txt")
    buffers = [io.BytesIO() for _ in range(3)]
    calls = []

    s3.client.download_file(s3.bucket, "obj.txt", str(tmp_path / "1"))
    calls.append(("s3.download_file", "read", "obj.txt", _line() - 1))
    bucket.download_file("obj.txt", str(tmp_path / "2"))
    calls.append(("s3.download_file", "read", "obj.txt", _line() - 1))
    obj.download_file(str(tmp_path / "3"))
    calls.append(("s3.download_file", "read", "obj.txt", _line() - 1))
    s3.client.download_fileobj(s3.bucket, "obj.txt", buffers[0])
    calls.append(("s3.download_fileobj", "read", "obj.txt", _line() - 1))
    bucket.download_fileobj(Key="obj.txt", Fileobj=buffers[1])
    calls.append(("s3.download_fileobj", "read", "obj.txt", _line() - 1))
    obj.download_fileobj(buffers[2])
    calls.append(("s3.download_fileobj", "read", "obj.txt", _line() - 1))
    s3.client.upload_file(str(tmp_path / "up.txt"), s3.bucket, "up/1.txt")
    calls.append(("s3.upload_file", "write", "up/1.txt", _line() - 1))
    bucket.upload_file(str(tmp_path / "up.txt"), "up/2.txt")
    calls.append(("s3.upload_file", "write", "up/2.txt", _line() - 1))
    s3.resource.Object(s3.bucket, "up/3.txt").upload_file(str(tmp_path / "up.txt"))
    calls.append(("s3.upload_file", "write", "up/3.txt", _line() - 1))
    s3.client.upload_fileobj(io.BytesIO(b"from buffer"), s3.bucket, "up/4.txt")
    calls.append(("s3.upload_fileobj", "write", "up/4.txt", _line() - 1))

    # Nothing else recorded: not the GetObject/PutObject inside, nor the local files s3transfer opens.
    records = audited.all_records()
    assert len(records) == len(calls), [r["body"] for r in records]
    for record, (api, action, key, line) in zip(records, calls):
        a = record["attributes"]
        _check_s3(a, s3, key, api=api, action=action, line=line, function="test_transfer_forms_are_one_record_each")
        assert a[schema.AUDIT_OUTCOME] == "success"
        assert set(a) == schema.REQUIRED_ATTRIBUTES | {schema.AUDIT_CHAIN_HASH} | S3_ATTRIBUTES
    assert s3.operations() == ["HeadObject", "GetObject"] * 6 + ["PutObject"] * 4
    audited.clear()

    for n in "123":
        assert (tmp_path / n).read_bytes() == b"content"
    assert [b.getvalue() for b in buffers] == [b"content"] * 3
    assert [s3.get(f"up/{n}.txt") for n in "123"] == [b"uploaded"] * 3
    assert s3.get("up/4.txt") == b"from buffer"


def test_multipart_upload_file_is_one_record(audited, s3, tmp_path):
    data = os.urandom(12 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    audited.clear()

    s3.client.upload_file(str(source), s3.bucket, "up/big.bin", Config=MULTIPART)
    line = _line() - 1

    assert s3.operations() == ["CreateMultipartUpload"] + ["UploadPart"] * 3 + ["CompleteMultipartUpload"]
    a = _one(audited.all_records())
    _check_s3(a, s3, "up/big.bin", api="s3.upload_file", action="write", line=line,
              function="test_multipart_upload_file_is_one_record")
    assert s3.get("up/big.bin") == data


# -- errors ----------------------------------------------------------------------


def test_no_such_key_is_a_failure_and_the_same_error_propagates(audited, s3):
    with pytest.raises(ClientError) as reference:
        _original(botocore.client.BaseClient, "_make_api_call")(
            s3.client, "GetObject", {"Bucket": s3.bucket, "Key": "missing.csv"})
    audited.clear()

    with pytest.raises(ClientError) as raised:
        s3.client.get_object(Bucket=s3.bucket, Key="missing.csv")
    line = _line() - 1

    assert type(raised.value) is type(reference.value) is s3.client.exceptions.NoSuchKey
    assert raised.value.response["Error"] == reference.value.response["Error"]
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert str(raised.value) == str(reference.value)
    records = audited.all_records()
    a = _one(records)
    _check_s3(a, s3, "missing.csv", api="s3.GetObject", action="read", line=line,
              function="test_no_such_key_is_a_failure_and_the_same_error_propagates")
    assert a[schema.AUDIT_OUTCOME] == "failure"
    assert a[schema.ERROR_TYPE] == "NoSuchKey"
    assert a[schema.AWS_REQUEST_ID] == raised.value.response["ResponseMetadata"]["RequestId"] != ""
    assert set(a) == schema.REQUIRED_ATTRIBUTES | {schema.AUDIT_CHAIN_HASH} | S3_ATTRIBUTES | {schema.AWS_REQUEST_ID, schema.ERROR_TYPE}
    assert records[0]["severity_text"] == "WARN" and records[0]["severity_number"] == 13
    assert records[0]["body"].endswith(f"s3://{s3.bucket}/missing.csv via s3.GetObject (failure: NoSuchKey)")


def test_download_file_of_missing_key_is_one_failure(audited, s3, tmp_path):
    with pytest.raises(ClientError) as reference:
        _original(boto3.s3.inject, "download_file")(s3.client, s3.bucket, "gone.bin", str(tmp_path / "ref"))
    audited.clear()
    s3.requests.clear()

    with pytest.raises(ClientError) as raised:
        s3.client.download_file(s3.bucket, "gone.bin", str(tmp_path / "gone.bin"))
    line = _line() - 1

    assert type(raised.value) is type(reference.value) is ClientError
    assert raised.value.response["Error"] == reference.value.response["Error"]
    assert raised.value.response["Error"] == {"Code": "404", "Message": "Not Found"}
    assert not (tmp_path / "gone.bin").exists()
    assert s3.operations() == ["HeadObject"]
    a = _one(audited.all_records())
    _check_s3(a, s3, "gone.bin", api="s3.download_file", action="read", line=line,
              function="test_download_file_of_missing_key_is_one_failure")
    assert a[schema.AUDIT_OUTCOME] == "failure"
    assert a[schema.ERROR_TYPE] == "404"
    # An error to HEAD has no body: botocore takes the request id from x-amz-request-id, which S3
    # sends and moto does not ("" then), and the record has it exactly when the error does.
    request_id = raised.value.response["ResponseMetadata"]["RequestId"]
    assert request_id == ""
    assert a.get(schema.AWS_REQUEST_ID) == (request_id or None)


def _moto_iam_auth(endpoint: str, initial_no_auth_action_count: str) -> None:
    """moto's server-mode switch for IAM authentication ("0": every request from now on; "inf": off)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=initial_no_auth_action_count.encode(),
        method="POST", headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request) as response:
        assert json.load(response)["status"] == "ok"


def test_access_refused_is_denied(audited, s3, moto_server, tmp_path):
    s3.put("secret.csv", b"s")
    iam = s3.session.client("iam", endpoint_url=moto_server)
    user = f"nobody-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)  # no policy: authenticated, allowed nothing
    key = iam.create_access_key(UserName=user)["AccessKey"]
    nobody = s3.make_client(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    stranger = s3.make_client(aws_access_key_id="AKIAUNKNOWN000000000", aws_secret_access_key="x")
    audited.clear()

    _moto_iam_auth(moto_server, "0")
    try:
        with pytest.raises(ClientError) as denied:
            nobody.get_object(Bucket=s3.bucket, Key="secret.csv")
        denied_line = _line() - 1
        with pytest.raises(ClientError) as forbidden:
            nobody.download_file(s3.bucket, "secret.csv", str(tmp_path / "secret.csv"))
        with pytest.raises(ClientError) as unknown:
            stranger.get_object(Bucket=s3.bucket, Key="secret.csv")
    finally:
        _moto_iam_auth(moto_server, "inf")

    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert forbidden.value.response["Error"]["Code"] == "403"  # HeadObject: no body, the status is the code
    assert unknown.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    records = audited.all_records()
    assert [
        tuple(r["attributes"][name] for name in (schema.AUDIT_API, schema.AUDIT_OUTCOME, schema.ERROR_TYPE))
        for r in records
    ] == [
        ("s3.GetObject", "denied", "AccessDenied"),
        ("s3.download_file", "denied", "403"),
        ("s3.GetObject", "denied", "InvalidAccessKeyId"),
    ]
    a = records[0]["attributes"]
    _check_s3(a, s3, "secret.csv", api="s3.GetObject", action="read", line=denied_line,
              function="test_access_refused_is_denied")
    assert a[schema.AWS_REQUEST_ID] == denied.value.response["ResponseMetadata"]["RequestId"] != ""
    assert records[0]["severity_text"] == "WARN"
    assert records[0]["body"].endswith("(denied: AccessDenied)")


@contextlib.contextmanager
def _refusing_port():
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_endpoint_is_a_failure_without_request_id(audited, s3):
    with _refusing_port() as port:
        client = s3.session.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                                   config=_config(retries={"total_max_attempts": 1}))
        with pytest.raises(EndpointConnectionError):
            client.get_object(Bucket=s3.bucket, Key="k")
        line = _line() - 1
    a = _one(audited.all_records())
    _check_s3(a, s3, "k", api="s3.GetObject", action="read", line=line,
              function="test_unreachable_endpoint_is_a_failure_without_request_id")
    assert a[schema.AUDIT_OUTCOME] == "failure"
    assert a[schema.ERROR_TYPE] == "botocore.exceptions.EndpointConnectionError"
    assert schema.AWS_REQUEST_ID not in a


def test_local_error_of_a_transfer_is_its_failure(audited, s3, tmp_path):
    s3.put("k.csv", b"x")
    audited.clear()
    with pytest.raises(FileNotFoundError):
        s3.client.download_file(s3.bucket, "k.csv", str(tmp_path / "no-such-dir" / "k.csv"))
    a = _one(audited.all_records())  # the failed open of the temporary file belongs to it
    assert (a[schema.AUDIT_API], a[schema.AUDIT_OUTCOME], a[schema.ERROR_TYPE]) == (
        "s3.download_file", "failure", "FileNotFoundError")


@pytest.mark.parametrize("code, outcome", [
    ("AccessDenied", "denied"), ("AllAccessDisabled", "denied"), ("403", "denied"),
    ("SignatureDoesNotMatch", "denied"), ("ExpiredToken", "denied"),
    ("NoSuchKey", "failure"), ("NoSuchBucket", "failure"), ("404", "failure"), ("SlowDown", "failure"),
])
def test_classify_s3_error(code, outcome):
    # Codes moto does not produce, too: a ClientError as botocore builds it from a parsed error response.
    error = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"RequestId": "REQ123", "HTTPStatusCode": 403}}, "GetObject")
    attributes: dict = {}
    assert classify_s3_error(error, attributes) == (outcome, code)
    assert attributes == {schema.AWS_REQUEST_ID: "REQ123"}


# -- uninstrument ----------------------------------------------------------------


def test_uninstrument_restores_exact_objects(aws_session, moto_server):
    patched = [(botocore.client.BaseClient, "_make_api_call"), (concurrent.futures.ThreadPoolExecutor, "submit")]
    patched += [(boto3.s3.inject, name) for name in TRANSFERS]
    originals = [vars(owner)[name] for owner, name in patched]
    # The libraries' own functions, also after the other tests' `audited` teardowns
    for original, (owner, name) in zip(originals, patched):
        module = owner.__name__ if isinstance(owner, types.ModuleType) else owner.__module__
        assert type(original) is types.FunctionType, name
        assert (original.__module__, original.__name__) == (module, name)

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(delivery="memory"))
    try:
        for (owner, name), original in zip(patched, originals):
            assert vars(owner)[name] is not original and vars(owner)[name].__wrapped__ is original, name
        client = aws_session.client("s3", endpoint_url=moto_server, config=_config())
        bucket = f"audit-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert [log.log_record.event_name for log in exporter.get_finished_logs()] == ["audit.lifecycle", "audit.access"]
    finally:
        AuditInstrumentor().uninstrument()
    for (owner, name), original in zip(patched, originals):
        assert vars(owner)[name] is original, name

    # The client made while instrumented keeps its transfer methods, now passing through.
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    buffer = io.BytesIO()
    client.download_fileobj(bucket, "k", buffer)
    assert buffer.getvalue() == b"v"
    # nothing recorded after uninstrument: "started", the put_object, "stopped" and the chain's closing checkpoint
    assert [(log.log_record.event_name, log.log_record.attributes.get("audit.lifecycle.event"))
            for log in exporter.get_finished_logs()] == [
        ("audit.lifecycle", "started"), ("audit.access", None), ("audit.lifecycle", "stopped"), ("audit.checkpoint", None)]
    provider.shutdown()


def test_pyarrow_s3_filesystem_and_lazy_scans_name_the_s3_objects(audited, s3):
    """pyarrow speaks S3 in C++ (its own AWS SDK; boto3 never runs): its filesystem's methods and a
    dataset's scans are the records, with the same s3:// names as boto3's."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    remote = pafs.S3FileSystem(access_key="testing", secret_key="testing", region=REGION, scheme="http",
                               endpoint_override=s3.endpoint.removeprefix("http://"))
    table = pa.table({"a": [1, 2, 3]})
    audited.clear()
    with remote.open_output_stream(f"{s3.bucket}/parts/0.parquet") as out:
        pq.write_table(table, out)
    wrote = _line() - 2
    dataset = ds.dataset(f"{s3.bucket}/parts", filesystem=remote, format="parquet")
    made = _line() - 1
    assert dataset.to_table().equals(table)
    scanned = _line() - 1
    with remote.open_input_file(f"{s3.bucket}/parts/0.parquet") as source:
        assert pq.read_table(source).equals(table)
    opened = _line() - 2
    remote.delete_file(f"{s3.bucket}/parts/0.parquet")
    deleted = _line() - 1
    assert s3.operations() == []  # none of it went through boto3
    got = [(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_ACTION],
            r["attributes"][schema.AUDIT_RESOURCE_URI], r["attributes"][schema.CODE_LINE_NUMBER])
           for r in audited.records()]
    uri = f"s3://{s3.bucket}/parts"
    assert got == [
        ("pyarrow.fs.S3FileSystem.open_output_stream", "write", f"{uri}/0.parquet", wrote),
        ("pyarrow.dataset.dataset", "read", uri, made),
        ("pyarrow.dataset.Dataset.to_table", "read", uri, scanned),
        ("pyarrow.fs.S3FileSystem.open_input_file", "read", f"{uri}/0.parquet", opened),
        ("pyarrow.fs.S3FileSystem.delete_file", "delete", f"{uri}/0.parquet", deleted),
    ]
    for record in audited.records():
        attributes = record["attributes"]
        assert attributes[schema.AWS_S3_BUCKET] == s3.bucket and schema.FILE_PATH not in attributes
        assert attributes[schema.AWS_S3_KEY] == attributes[schema.AUDIT_RESOURCE_URI].removeprefix(f"s3://{s3.bucket}/")
        assert attributes[schema.AUDIT_OUTCOME] == "success"
    with pytest.raises(FileNotFoundError):
        remote.open_input_file(f"{s3.bucket}/parts/0.parquet")
    (failed,) = audited.records()[5:]
    assert (failed["attributes"][schema.AUDIT_OUTCOME], failed["attributes"][schema.ERROR_TYPE]) == (
        "failure", "FileNotFoundError")
