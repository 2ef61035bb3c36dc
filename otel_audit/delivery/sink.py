"""The embedded local sink: ``OTEL_LOGS_EXPORTER=audit_file``.

For use without any collector.  Appends one OTLP/JSON ``ExportLogsServiceRequest``
per line to ``OTEL_PYTHON_AUDIT_FILE`` (default ``./otel-audit.jsonl``): the
file format the collector's ``otlpjsonfile`` receiver reads, so a collector
can pick the trail up later.  The encoding is OpenTelemetry's own
(``opentelemetry-exporter-otlp-json-file``); this module only chooses the
file and opens it owner-readable only (audit trails name sensitive paths).
"""

from __future__ import annotations

import os

# The package exposes the exporter only through its entry point module.
from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter

from otel_audit.config import AuditConfig


class AuditFileLogExporter(FileLogExporter):
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            path = AuditConfig.from_env().file
        self.path = os.path.abspath(os.fspath(path))
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        # os.fdopen, not open(): the sink's own writes are never audited.
        self._own_stream = os.fdopen(fd, "a", encoding="utf-8")
        super().__init__(stream=self._own_stream)

    def shutdown(self) -> None:
        super().shutdown()
        self._own_stream.close()
