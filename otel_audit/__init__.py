"""otel-audit: an OpenTelemetry audit trail of data and model access.

Run an unchanged script under ``opentelemetry-instrument`` and every access
through ``open``, pandas readers, numpy, ``torch.load``/``save``, safetensors, ``joblib.load``/``dump``
and boto3 S3 becomes one OpenTelemetry log record (schema: :mod:`otel_audit.schema`).

Public API:

* :class:`AuditInstrumentor` -- the instrumentor (entry point ``otel_audit``);
* :func:`enduser` -- attribute accesses in a block to an application end user;
* :func:`record_access`, :func:`audit_access` -- record accesses to anything else;
* :class:`AuditConfig` -- the settings in code (``AuditConfig.from_env()`` reads the
  ``OTEL_PYTHON_AUDIT_*`` variables), for ``AuditInstrumentor().instrument(config=...)``.

Importing ``otel_audit`` alone imports nothing else: each name is loaded on first use
(the interpreter start-up hook, :mod:`otel_audit._startup`, imports this package in
every instrumented process).
"""

from __future__ import annotations

import importlib

from otel_audit.version import __version__

_PUBLIC = {
    "AccessDenied": "otel_audit.recorder",
    "AuditConfig": "otel_audit.config",
    "AuditInstrumentor": "otel_audit.instrumentor",
    "audit_access": "otel_audit.manual",
    "enduser": "otel_audit.context",
    "record_access": "otel_audit.manual",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
