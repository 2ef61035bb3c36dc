"""Auditing that survives a failed OpenTelemetry start-up.

``opentelemetry-instrument`` configures the SDK first and loads the instrumentors
after; when the configuration raises (``OTEL_LOGS_EXPORTER=bogus``, a typo in
``OTEL_TRACES_EXPORTER``, an exporter that cannot be built), it logs the traceback
and loads **no** instrumentor, so without this module nothing would be audited and
nobody would be told.

The wheel installs ``otel_audit.pth`` at the top of site-packages; Python runs it at
every interpreter start.  Its one line costs a dictionary lookup unless
``PYTHONPATH`` names OpenTelemetry's auto-instrumentation directory (what
``opentelemetry-instrument`` and the OpenTelemetry Operator set); then it calls
:func:`install`, which only registers a post-import hook for OpenTelemetry's loader
(nothing is imported early).  The hook wraps ``_load_configurators``: when it raises,
otel-audit starts on its own (durable delivery: records are spooled, delivered through
``OTEL_LOGS_EXPORTER`` when it names a working exporter, else kept for
``otel-audit flush``), says so once on stderr, and the exception goes on exactly as
before, so OpenTelemetry itself behaves as it would without otel-audit.

``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_audit`` (or ``*``) turns this off too.
"""

from __future__ import annotations

import os

LOADER = "opentelemetry.instrumentation.auto_instrumentation._load"

_installed = False


def install() -> None:
    """Called by ``otel_audit.pth`` in a process that ``opentelemetry-instrument`` set up (once, however
    often: ``site`` can process site-packages twice in a virtual environment)."""
    global _installed
    try:
        if _installed or _disabled():
            return
        _installed = True
        from wrapt import register_post_import_hook

        register_post_import_hook(_wrap_loader, LOADER)
    except Exception as exc:  # never in the way of the interpreter's start
        _report(f"start-up hook not installed: {type(exc).__name__}: {exc}")


def _disabled() -> bool:
    names = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    return "otel_audit" in names or "*" in names


def _wrap_loader(module) -> None:
    from wrapt import wrap_function_wrapper

    wrap_function_wrapper(module, "_load_configurators", _load_configurators)


def _load_configurators(wrapped, instance, args, kwargs):
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        audit_anyway(exc)
        raise


def audit_anyway(failure: BaseException) -> None:
    """Start otel-audit although OpenTelemetry's configuration failed with ``failure``."""
    try:
        from dataclasses import replace

        from otel_audit import diagnostics
        from otel_audit.config import AuditConfig
        from otel_audit.instrumentor import AuditInstrumentor

        config = AuditConfig.from_env()
        note = ""
        if config.delivery != "durable":
            # memory delivery emits through the SDK pipeline that was just not built
            config = replace(config, delivery="durable")
            note = " (durable delivery, whatever OTEL_PYTHON_AUDIT_DELIVERY says: there is no SDK pipeline)"
        diagnostics.report(
            f"OpenTelemetry's configuration failed ({type(failure).__name__}: {diagnostics.shorten(str(failure), 200)}), "
            f"so opentelemetry-instrument loads no instrumentation; otel-audit audits on its own{note}")
        AuditInstrumentor().instrument(config=config)
    except Exception as exc:
        _report(f"not started after OpenTelemetry's configuration failed: {type(exc).__name__}: {exc}; "
                "no access is audited")


def _report(message: str) -> None:
    try:
        from otel_audit import diagnostics

        diagnostics.report(message)
    except Exception:
        pass
