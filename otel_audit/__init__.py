"""otel-audit: an OpenTelemetry audit trail of data and model access.

Run an unchanged script under ``opentelemetry-instrument`` and every access
through ``open``, pandas readers, ``torch.load``/``save``, ``joblib.load``/``dump``
and boto3 S3 becomes one OpenTelemetry log record (schema: :mod:`otel_audit.schema`).

Public API:

* :class:`AuditInstrumentor` -- the instrumentor (entry point ``otel_audit``);
* :func:`enduser` -- attribute accesses in a block to an application end user;
* :func:`record_access`, :func:`audit_access` -- record accesses to anything else.
"""

from otel_audit.context import enduser
from otel_audit.instrumentor import AuditInstrumentor
from otel_audit.manual import audit_access, record_access
from otel_audit.version import __version__

__all__ = ["AuditInstrumentor", "audit_access", "enduser", "record_access", "__version__"]
