"""The ``otel_audit`` instrumentor, loaded by ``opentelemetry-instrument``.

Usage::

    pip install otel-audit opentelemetry-distro
    opentelemetry-instrument python train.py            # OTLP to localhost:4317
    OTEL_LOGS_EXPORTER=audit_file opentelemetry-instrument python train.py   # ./otel-audit.jsonl

or in code, after configuring the OpenTelemetry SDK::

    from otel_audit import AuditInstrumentor
    AuditInstrumentor().instrument()          # logger_provider=... optional
    ...
    AuditInstrumentor().uninstrument()        # every patched object restored

``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_audit`` turns it off.
``instrument()`` imports none of the instrumented libraries: each is patched
when the program imports it.  It never raises: a problem is reported on
stderr and every other instrumentor still loads.
"""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

from opentelemetry._logs import LoggerProvider
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.trace import TracerProvider

from otel_audit import diagnostics, schema
from otel_audit.config import AuditConfig
from otel_audit.hooks import DeferredAccessPoint, deferred_access_point
from otel_audit.hooks._base import hook_failed
from otel_audit.recorder import AuditRecorder, set_default_recorder


class AuditInstrumentor(BaseInstrumentor):
    """Records every data and model access as an OpenTelemetry audit log record."""

    _access_points: list[DeferredAccessPoint] = []

    def instrument(self, *, config: AuditConfig | None = None, logger_provider: LoggerProvider | None = None,
                   tracer_provider: TracerProvider | None = None,
                   exporters: "Sequence[LogRecordExporter] | Mapping[str, LogRecordExporter] | None" = None,
                   **kwargs) -> None:
        """Start auditing: patch every access point of ``config.hooks`` (each library when it is imported).

        ``config``
            an :class:`~otel_audit.AuditConfig`; default ``AuditConfig.from_env()``, the
            ``OTEL_PYTHON_AUDIT_*`` variables.  ``AuditConfig(delivery="memory")`` sends records
            through ``logger_provider``'s own processors; with the default ``delivery="durable"``
            they are spooled and shipped through the exporters ``OTEL_LOGS_EXPORTER`` names.
        ``logger_provider``
            the OpenTelemetry ``LoggerProvider`` records are emitted through (default: the global
            one); its resource names the service and its spool directory.  With durable delivery
            and no exporter named by ``OTEL_LOGS_EXPORTER`` (nor ``exporters``), spooled records are
            delivered through this provider's processors: what you configured in code is where they
            go (``OTEL_LOGS_EXPORTER=none`` keeps them in the spool instead).  Then "delivered" means
            handed to it and flushed; ``exporters`` gives more.
        ``exporters``
            durable delivery ships the spool to these ``LogRecordExporter`` objects with every
            guarantee: each acknowledges what it exported, retries until it does, and records left by
            ended processes of the service are delivered too.  A list, or a mapping of stable names
            (the spool keeps each exporter's progress under its name).
        ``tracer_provider``
            for audit spans (``AuditConfig(spans=True)``; default: the global one).

        Never raises: a problem is reported on stderr (``otel-audit: ...``) and every other hook
        still loads.  Calling it again while instrumented does nothing; :meth:`uninstrument` puts
        back every patched object exactly.
        """
        return super().instrument(config=config, logger_provider=logger_provider,
                                  tracer_provider=tracer_provider, exporters=exporters, **kwargs)

    def instrumentation_dependencies(self) -> Collection[str]:
        # Every instrumented library is optional: each hook waits for its import.
        return ()

    def _instrument(self, **kwargs) -> None:
        """kwargs: those of :meth:`instrument`."""
        try:
            config = kwargs.get("config") or AuditConfig.from_env()
            recorder = AuditRecorder(config, logger_provider=kwargs.get("logger_provider"),
                                     tracer_provider=kwargs.get("tracer_provider"), exporters=kwargs.get("exporters"))
            set_default_recorder(recorder)
        except Exception as exc:
            diagnostics.report(f"not started: {type(exc).__name__}: {exc}; no access is audited")
            return
        self._access_points = []
        # "threads" records nothing: it folds what audited calls do on pool threads into their records
        for name in (*config.hooks, "threads") if config.hooks else ():
            try:
                point = deferred_access_point(name)  # its module loaded when its library is imported
                point.install(recorder)
                self._access_points.append(point)
            except Exception as exc:
                diagnostics.report(f"hook {name!r} not installed: {type(exc).__name__}: {exc}; its accesses are NOT audited")
                hook_failed(recorder, name, exc)

    def _uninstrument(self, **kwargs) -> None:
        recorder = next((p.recorder for p in self._access_points if p.recorder is not None), None)
        if recorder is not None:
            recorder.lifecycle(schema.LIFECYCLE_STOPPED, if_started=True)
            recorder.close_trail()  # the chain's closing checkpoint, after "stopped"
        for point in reversed(self._access_points):
            recorder = point.recorder
            point.uninstall()
            if recorder is not None:
                recorder.close()
        self._access_points = []
        set_default_recorder(None)
