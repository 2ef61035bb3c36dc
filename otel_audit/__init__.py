"""otel-audit: an OpenTelemetry audit trail of data and model access.

Run an unchanged script under ``opentelemetry-instrument`` and every access
through ``open``, pandas readers, ``torch.load``/``save``, ``joblib.load``/``dump``
and boto3 S3 becomes one OpenTelemetry log record (schema: :mod:`otel_audit.schema`).

Public API:

* :class:`AuditInstrumentor` -- the instrumentor (entry point ``otel_audit``);
* :func:`enduser` -- attribute accesses in a block to an application end user;
* :func:`record_access`, :func:`audit_access` -- record accesses to anything else;
* :class:`AuditConfig` -- the settings in code (``AuditConfig.from_env()`` reads the
  ``OTEL_PYTHON_AUDIT_*`` variables), for ``AuditInstrumentor().instrument(config=...)``.
"""

from otel_audit.config import AuditConfig
from otel_audit.context import enduser
from otel_audit.instrumentor import AuditInstrumentor
from otel_audit.manual import audit_access, record_access
from otel_audit.version import __version__

__all__ = ["AuditConfig", "AuditInstrumentor", "audit_access", "enduser", "record_access", "__version__"]
