"""Recording accesses otel-audit does not patch: database tables, model registries, services.

    otel_audit.record_access("postgres://db/public.patients", "read", api="sqlalchemy.execute")

    with otel_audit.audit_access("mlflow://models/churn/3", "read", api="mlflow.load_model",
                                 resource_type="model"):
        model = mlflow.pyfunc.load_model(...)     # outcome from the block: success, or the exception

Both produce a record of the same schema as the hooks, with the caller's line
as the call site, the current end user, and the active span's trace context.
Both ask the access policy first, as every hook does: a denied access raises
``otel_audit.AccessDenied`` (``record_access`` before recording, ``audit_access``
before the block runs) and is recorded with outcome ``denied``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, Mapping

from otel_audit import schema
from otel_audit.callsite import find_call_site
from otel_audit.context import in_audited_call
from otel_audit.recorder import default_recorder
from otel_audit.resources import printable

MANUAL_API = "otel_audit.record_access"
_SCHEMA_OWNED = schema.REQUIRED_ATTRIBUTES | {schema.ERROR_TYPE, schema.ENDUSER_ID}


def _check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; accepted: {', '.join(accepted)}")


def _base_attributes(uri, action, api, resource_type, attributes, frame) -> dict:
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"uri={uri!r} is not accepted; accepted: a non-empty string such as s3://bucket/key")
    _check_choice("action", action, schema.ACTIONS)
    _check_choice("resource_type", resource_type, schema.RESOURCE_TYPES)
    extra = dict(attributes or {})
    clash = sorted(_SCHEMA_OWNED.intersection(extra))
    if clash:
        raise ValueError(f"attributes may not set {', '.join(clash)}: otel-audit sets them")
    path, line, function = find_call_site(frame) or ("<unknown>", 0, "<unknown>")
    extra.update({
        schema.AUDIT_RESOURCE_URI: printable(uri),
        schema.AUDIT_RESOURCE_TYPE: resource_type,
        schema.AUDIT_ACTION: action,
        schema.AUDIT_API: printable(api),
        schema.CODE_FILE_PATH: path,
        schema.CODE_LINE_NUMBER: line,
        schema.CODE_FUNCTION_NAME: function,
    })
    return extra


def record_access(
    uri: str,
    action: str,
    *,
    api: str = MANUAL_API,
    resource_type: str = schema.TYPE_DATA,
    outcome: str = schema.OUTCOME_SUCCESS,
    error_type: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> None:
    """Record one access to ``uri``.  Invalid arguments raise ``ValueError`` naming the accepted values."""
    _check_choice("outcome", outcome, schema.OUTCOMES)
    record = _base_attributes(uri, action, api, resource_type, attributes, sys._getframe(1))
    recorder = default_recorder()
    recorder.admit([record])  # the access policy, and fail-closed: raises PermissionError
    recorder.emit(record, start_ns=time.time_ns(), outcome=outcome, error_type=error_type)


@contextlib.contextmanager
def audit_access(
    uri: str,
    action: str,
    *,
    api: str = MANUAL_API,
    resource_type: str = schema.TYPE_DATA,
    attributes: Mapping[str, object] | None = None,
) -> Iterator[None]:
    """Record the block as one access: success, or failure/denied with the exception that left it.

    Accesses the block makes through patched APIs belong to it and are not recorded again.
    """
    record = _base_attributes(uri, action, api, resource_type, attributes, sys._getframe(2))
    recorder = default_recorder()
    recorder.admit([record])  # the access policy, and fail-closed: raises PermissionError before the block runs
    start_ns = time.time_ns()
    token = in_audited_call.set(True)
    try:
        yield
    except BaseException as exc:
        in_audited_call.reset(token)
        recorder.emit_error(record, start_ns=start_ns, error=exc)
        raise
    in_audited_call.reset(token)
    recorder.emit(record, start_ns=start_ns)
