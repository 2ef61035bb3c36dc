"""The embedded local sink: ``OTEL_LOGS_EXPORTER=audit_file``.

For use without any collector.  Appends one OTLP/JSON ``ExportLogsServiceRequest``
per line to ``OTEL_PYTHON_AUDIT_FILE`` (default ``./otel-audit.jsonl``): the
file format the collector's ``otlpjsonfile`` receiver reads, so a collector
can pick the trail up later.  The encoding is OpenTelemetry's own
(``opentelemetry-exporter-otlp-json-file``, line for line what its
``FileLogExporter`` writes; durable delivery's spooled records are written as
the same lines by :mod:`otel_audit.delivery.otlp_json`); this module chooses the
file and how it is written:

* **No descriptor kept.** The file is opened for each export batch and closed
  after it, so a program that closes descriptors it did not open cannot make
  the trail land in one of its own files, and nothing is open before the first
  export.
* **Owner-only, ours only.** Created ``0600`` whatever the umask; an existing
  trail of ours readable by others is tightened to ``0600`` (and that is said);
  a file of another user's, a symbolic link or anything but a regular file is
  refused.
* **Whole lines.** A file whose last line was torn (a writer killed
  mid-line, a full disk) gets a line break first, so the torn line stays a
  reader's one bad line and does not swallow the next batch.
* **Never fatal.** The exporter is created even when the path is unusable (the
  SDK would otherwise stop initialising, and with it auditing).  A batch that
  cannot be written is reported once and fails: with durable delivery the
  records stay in the spool and are written once the file can be.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

# The package exposes its encoder and line format only through these modules; using them
# keeps every line exactly what the stock FileLogExporter writes.
from opentelemetry.exporter.otlp.json.file._internal import _format_line
from opentelemetry.exporter.otlp.json.file._log_exporter import _encode_logs_to_dict
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_audit import diagnostics
from otel_audit.config import AuditConfig
from otel_audit.delivery import otlp_json, ownfiles


def _line_of_records(batch: Sequence[ReadableLogRecord]) -> str | None:
    encoded = _encode_logs_to_dict(batch)
    return None if encoded is None else _format_line(encoded)


class AuditFileLogExporter(LogRecordExporter):
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            path = AuditConfig.from_env().file
        self.path = os.path.abspath(os.fspath(path))
        self._lock = threading.Lock()
        self._shutdown = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._write(_line_of_records, batch)

    def export_request(self, request: bytes) -> bool:
        """The durable shipper's way in: a serialized ``ExportLogsServiceRequest`` of spooled records,
        written as the very line :meth:`export` writes for the same records (``otlp_json.request_line``),
        without decoding them into SDK records first."""
        return self._write(otlp_json.request_line, request) == LogRecordExportResult.SUCCESS

    def _write(self, line_of, data) -> LogRecordExportResult:
        if self._shutdown:
            return LogRecordExportResult.FAILURE
        try:
            text = line_of(data)
            if text is None:
                return LogRecordExportResult.SUCCESS
            line = text.encode("utf-8")
            with self._lock:
                ownfiles.make_private_directories(os.path.dirname(self.path))
                own, tightened = ownfiles.open_private_append(self.path)
                try:
                    if tightened:
                        diagnostics.report(tightened, key=f"tightened:{self.path}")
                    size = os.fstat(own.fd).st_size
                    if size and os.pread(own.fd, 1, size - 1) != b"\n":
                        line = b"\n" + line  # a torn last line (a writer killed mid-line) stays apart from ours
                    ownfiles.write_all(own, line)
                finally:
                    own.close()
        except Exception as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror and not isinstance(
                exc, ownfiles.UntrustedPath) else str(exc)
            diagnostics.report(
                f"cannot write the audit trail {diagnostics.shorten(self.path)}: {reason}. With durable "
                "delivery (the default) the records stay in the spool until it can be written; with "
                "OTEL_PYTHON_AUDIT_DELIVERY=memory they are lost", key=f"sink:{self.path}:{type(exc).__name__}")
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return True  # every export is written (and closed) before it returns
