"""boto3 / botocore: S3 object operations, and boto3's managed transfers.

* Every S3 client call in :data:`OPERATIONS` (``GetObject`` first of all) is
  recorded as ``s3.<Operation>``, through a client or a resource (resources
  call the client), with ``aws.s3.bucket``, ``aws.s3.key``, ``cloud.region``,
  and ``aws.request_id`` once S3 answered.
* ``DeleteObjects`` is one record per key (each findable by its URI; a key S3
  lists under ``Errors`` is a failure with its code); ``CopyObject`` is a read of
  its source and a write of its destination; a multipart upload is one write,
  recorded by ``CompleteMultipartUpload`` (its parts are not recorded; a part
  copied with ``UploadPartCopy`` records the read of its source).  ``HeadObject``
  reads metadata, not data, and is not recorded.
* ``download_file``/``download_fileobj``/``upload_file``/``upload_fileobj``/``copy`` in
  their client, ``Bucket`` and ``Object`` forms are **one** record each (``copy``: its
  source read and its destination written): the
  ranged GETs s3transfer makes on its worker threads belong to the user's
  call.  To know that, the worker tasks run in a copy of the submitting
  thread's context (s3transfer's pool is a ``ThreadPoolExecutor``: see the
  ``threads`` hook).
* An S3 error is recorded with its code as ``error.type`` (``NoSuchKey``,
  ``AccessDenied``...); access-refused codes make the outcome ``denied``.

Transfer methods are bound into each client class when the client is created,
so clients created before ``instrument()`` have no transfer wrappers (their
ranged GETs are still recorded one by one), and those created while
instrumented keep pass-through wrappers after ``uninstrument()``.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument, with_action
from otel_audit.recorder import classify_exception
from otel_audit.resources import ResourcePolicy, printable


class Operation(NamedTuple):
    action: str
    key_parameter: str | None  # the parameter naming the object (or prefix); None: the call writes nothing itself
    copies: bool = False  # also reads its CopySource (a record of its own)


DELETE_KEYS = "Delete"  # DeleteObjects: Delete={"Objects": [{"Key": ...}, ...]}, one record per key

OPERATIONS: dict[str, Operation] = {
    "GetObject": Operation(schema.ACTION_READ, "Key"),
    "PutObject": Operation(schema.ACTION_WRITE, "Key"),
    "DeleteObject": Operation(schema.ACTION_DELETE, "Key"),
    "DeleteObjects": Operation(schema.ACTION_DELETE, DELETE_KEYS),
    "ListObjectsV2": Operation(schema.ACTION_LIST, "Prefix"),
    "ListObjects": Operation(schema.ACTION_LIST, "Prefix"),
    "CopyObject": Operation(schema.ACTION_WRITE, "Key", copies=True),
    # a multipart upload is one record, made when it completes (the object exists from then on);
    # its parts are not recorded, and a part copied from another object records that read
    "CompleteMultipartUpload": Operation(schema.ACTION_WRITE, "Key"),
    "UploadPartCopy": Operation(schema.ACTION_WRITE, None, copies=True),
}


class Transfer(NamedTuple):
    action: str
    bucket_index: int  # positions after ``self``
    key_index: int
    source_index: int | None = None  # a copy's CopySource: a read of its own


# boto3.s3.inject functions, injected as client methods
TRANSFERS: dict[str, Transfer] = {
    "download_file": Transfer(schema.ACTION_READ, 0, 1),  # (Bucket, Key, Filename)
    "download_fileobj": Transfer(schema.ACTION_READ, 0, 1),  # (Bucket, Key, Fileobj)
    "upload_file": Transfer(schema.ACTION_WRITE, 1, 2),  # (Filename, Bucket, Key)
    "upload_fileobj": Transfer(schema.ACTION_WRITE, 1, 2),  # (Fileobj, Bucket, Key)
    "copy": Transfer(schema.ACTION_WRITE, 1, 2, source_index=0),  # (CopySource, Bucket, Key)
}

DENIED_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403",
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
})


def _region(client) -> dict:
    region = getattr(getattr(client, "meta", None), "region_name", None)
    return {schema.CLOUD_REGION: printable(region)} if isinstance(region, str) else {}


def _s3_attributes(policy: ResourcePolicy, client, bucket, key) -> dict | None:
    if not isinstance(bucket, str):
        return None
    attributes = policy.describe_s3(bucket, key if isinstance(key, str) else None)
    if attributes is not None:
        attributes.update(_region(client))
    return attributes


def _copy_source(copy_source) -> tuple[str | None, str | None]:
    """Bucket and key of a CopySource: ``{"Bucket": ..., "Key": ...}`` or ``"bucket/key[?versionId=...]"``."""
    if isinstance(copy_source, dict):
        return copy_source.get("Bucket"), copy_source.get("Key")
    if isinstance(copy_source, str):
        bucket, _, key = unquote(copy_source.partition("?")[0]).lstrip("/").partition("/")
        return bucket, key
    return None, None


def _describe_api_call(policy: ResourcePolicy, client, args: tuple, kwargs: dict) -> list[dict] | None:
    name = argument(args, kwargs, 0, "operation_name")
    operation = OPERATIONS.get(name)
    if operation is None or client.meta.service_model.service_name != "s3":
        return None
    params = argument(args, kwargs, 1, "api_params") or {}
    accesses = []
    if operation.copies:
        accesses.append(with_action(_s3_attributes(policy, client, *_copy_source(params.get("CopySource"))), schema.ACTION_READ))
    if operation.key_parameter == DELETE_KEYS:
        objects = (params.get("Delete") or {}).get("Objects") or ()
        keys = [item.get("Key") for item in objects if isinstance(item, dict)]
    elif operation.key_parameter is not None:
        keys = [params.get(operation.key_parameter)]
    else:
        keys = []
    accesses.extend(with_action(_s3_attributes(policy, client, params.get("Bucket"), key), operation.action) for key in keys)
    for attributes in accesses:
        if attributes is not None:
            attributes[schema.AUDIT_API] = f"s3.{name}"
    return accesses


def _request_id(response) -> str | None:
    if isinstance(response, dict):
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        if isinstance(request_id, str) and request_id:
            return printable(request_id)
    return None


def _after_api_call(attributes: dict, response) -> tuple[str, str] | None:
    request_id = _request_id(response)
    if request_id is not None:
        attributes[schema.AWS_REQUEST_ID] = request_id
    if attributes[schema.AUDIT_API] == "s3.DeleteObjects" and isinstance(response, dict):
        # S3 answers 200 and lists the keys it could not delete, each with its own error code
        for error in response.get("Errors") or ():
            if isinstance(error, dict) and error.get("Key") == attributes.get(schema.AWS_S3_KEY):
                code = str(error.get("Code") or "Error")
                return (schema.OUTCOME_DENIED if code in DENIED_CODES else schema.OUTCOME_FAILURE), code
    return None


def classify_s3_error(exc: BaseException, attributes: dict) -> tuple[str, str]:
    """botocore's ClientError carries S3's error code and request id; anything else is generic."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        request_id = _request_id(response)
        if request_id is not None:
            attributes[schema.AWS_REQUEST_ID] = request_id
        code = (response.get("Error") or {}).get("Code")
        if code:
            code = str(code)
            return (schema.OUTCOME_DENIED if code in DENIED_CODES else schema.OUTCOME_FAILURE), code
    return classify_exception(exc, attributes)


def _transfer_describer(transfer: Transfer):
    def describe(policy: ResourcePolicy, client, args: tuple, kwargs: dict) -> dict | list | None:
        if client is None and args:  # called as a plain function: inject.download_file(client, ...)
            client, args = args[0], args[1:]
        bucket = argument(args, kwargs, transfer.bucket_index, "Bucket")
        key = argument(args, kwargs, transfer.key_index, "Key")
        destination = with_action(_s3_attributes(policy, client, bucket, key), transfer.action)
        if transfer.source_index is None:
            return destination
        source = _copy_source(argument(args, kwargs, transfer.source_index, "CopySource"))
        return [with_action(_s3_attributes(policy, client, *source), schema.ACTION_READ), destination]

    return describe


def _patch_botocore_client(point: AccessPoint, module) -> None:
    point.wrap(
        module.BaseClient,
        "_make_api_call",
        point.audited(None, None, _describe_api_call, after=_after_api_call, classify_error=classify_s3_error),
    )


def _patch_boto3_inject(point: AccessPoint, module) -> None:
    for name, transfer in TRANSFERS.items():
        point.wrap(
            module,
            name,
            point.audited(f"s3.{name}", None, _transfer_describer(transfer), classify_error=classify_s3_error),
        )


ACCESS_POINT = AccessPoint(
    "boto3",
    {
        "botocore.client": _patch_botocore_client,
        "boto3.s3.inject": _patch_boto3_inject,
    },
)
