"""Durable delivery: spool first, then ship through the standard exporters until acknowledged.

``OTEL_PYTHON_AUDIT_DELIVERY=durable`` routes audit records around the SDK's
in-memory ``BatchLogRecordProcessor``:

1. the recorder encodes each record (OTLP protobuf, :mod:`otel_audit.delivery.otlp`)
   and appends it to this process's spool segment before the audited call
   returns (:mod:`otel_audit.delivery.spool`);
2. a background shipper reads the segment, rebuilds the records and exports
   them through the exporters ``OTEL_LOGS_EXPORTER`` names (``otlp`` with the
   usual ``OTEL_EXPORTER_OTLP_*`` settings, ``audit_file``, ``console``...),
   advancing each exporter's acknowledged offset in the segment only when
   that exporter reported success, and retrying with backoff for as long as
   it takes;
3. segments left by processes that ended (collector down at exit, killed,
   ``os._exit`` workers) are delivered by the next process of the same service
   and by ``otel-audit flush``.

At exit the shipper gets ``OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT`` seconds; what
is still undelivered stays in the spool.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import time
from functools import partial
from typing import Callable, Iterable, NamedTuple, Sequence

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from otel_audit import diagnostics
from otel_audit.delivery import otlp, ownfiles, spool, transport

BATCH_SIZE = 512  # records per export call
MAX_BACKOFF = 30.0  # seconds between retries, at most, while the collector is down
ORPHAN_SCAN_INTERVAL = 5.0  # seconds between looks for segments of ended processes
RETRY_BROKEN_SPOOL = 5.0  # seconds before an unwritable spool is tried again
SHIPMENT_GAP = 0.02  # seconds a shipment waits after the record that woke it, for the ones that follow


class SpoolFull(OSError):
    """The spool is at OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES."""


# -- the record on disk ------------------------------------------------------

def encode_record(record: ReadableLogRecord) -> bytes:
    """One record as a serialized OTLP ``ResourceLogs``: self-contained (resource and scope included)."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    return encode_logs([record]).resource_logs[0].SerializeToString()


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode_record(payload: bytes) -> list[ReadableLogRecord]:
    """The records in one spooled payload, ready for any SDK ``LogRecordExporter``."""
    from opentelemetry.proto.logs.v1 import logs_pb2  # (protobuf: only once there is a record to decode)

    resource_logs = logs_pb2.ResourceLogs.FromString(payload)
    resource = Resource(_attributes(resource_logs.resource.attributes), resource_logs.schema_url or None)
    records = []
    for scope_logs in resource_logs.scope_logs:
        scope = InstrumentationScope(
            scope_logs.scope.name, scope_logs.scope.version or None, scope_logs.schema_url or None,
            _attributes(scope_logs.scope.attributes),
        )
        for log in scope_logs.log_records:
            log_record = LogRecord(
                timestamp=log.time_unix_nano or None,
                observed_timestamp=log.observed_time_unix_nano,
                trace_id=int.from_bytes(log.trace_id, "big") if log.trace_id else 0,
                span_id=int.from_bytes(log.span_id, "big") if log.span_id else 0,
                trace_flags=TraceFlags(log.flags & 0xFF),
                severity_text=log.severity_text or None,
                severity_number=SeverityNumber(log.severity_number) if log.severity_number else None,
                body=_value(log.body),
                attributes=_attributes(log.attributes),
                event_name=log.event_name or None,
            )
            records.append(ReadableLogRecord(log_record, resource, scope))
    return records


# -- exporters -----------------------------------------------------------------

def exporters_from_env() -> dict[str, LogRecordExporter]:
    """New instances of the exporters ``OTEL_LOGS_EXPORTER`` names, by name, resolved exactly as the SDK
    does (``otlp`` becomes the gRPC or HTTP exporter by ``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL``), each
    configured by its own environment variables."""
    # The SDK's own resolution, so the spool ships where the SDK pipeline would have.
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters

    try:
        _, _, classes = _import_exporters([], [], _get_exporter_names("logs"))
        exporters = by_destination({name: exporter_class() for name, exporter_class in classes.items()})
    except Exception as exc:
        value = os.environ.get("OTEL_LOGS_EXPORTER", "")
        installed = installed_log_exporters()
        unknown = [name for name in _get_exporter_names("logs") if name not in installed]
        if unknown:
            problem = (f"OTEL_LOGS_EXPORTER={diagnostics.shorten(value)}: {diagnostics.shorten(unknown[0])} is not an "
                       f"installed logs exporter (accepted: {', '.join(sorted(installed) + ['none'])}, comma-separated)")
        else:
            problem = (f"the audit exporters OTEL_LOGS_EXPORTER={diagnostics.shorten(value)} names could not be "
                       f"created: {type(exc).__name__}: {exc}")
        diagnostics.report(f"{problem}; audit records stay in the spool: `otel-audit flush` delivers them "
                           "once it is set to an exporter that works")
        return {}
    if not exporters:
        diagnostics.report("OTEL_LOGS_EXPORTER names no exporter: audit records stay in the spool "
                           "(set OTEL_LOGS_EXPORTER=otlp, audit_file or console)")
    return exporters


def installed_log_exporters() -> set[str]:
    """The names ``OTEL_LOGS_EXPORTER`` accepts here (the ``opentelemetry_logs_exporter`` entry points)."""
    from opentelemetry.util._importlib_metadata import entry_points

    return {entry_point.name for entry_point in entry_points(group="opentelemetry_logs_exporter")}


def logs_exporter_unset() -> bool:
    """``OTEL_LOGS_EXPORTER`` is not set at all (``none`` is a choice: records then stay in the spool)."""
    return not os.environ.get("OTEL_LOGS_EXPORTER", "").strip()


def has_processors(provider) -> bool:
    """An SDK ``LoggerProvider`` with at least one processor (one without any would take every record
    and deliver none).  When the SDK's inner layout is not the one known, assume it has."""
    processors = getattr(getattr(provider, "_multi_log_record_processor", None), "_log_record_processors", None)
    return processors is None or len(processors) > 0


def destination(name: str, exporter: LogRecordExporter) -> str:
    """Where an exporter delivers, as the spool names it: the exporter's name and its endpoint (OTLP) or
    file (``audit_file``), e.g. ``otlp_proto_grpc localhost:4317``.  Records are owed to destinations,
    and progress is acknowledged per destination."""
    target = getattr(exporter, "path", None) or getattr(exporter, "_endpoint", None)
    return f"{name} {target}" if isinstance(target, str) and target else name


def by_destination(exporters: dict[str, LogRecordExporter]) -> dict[str, LogRecordExporter]:
    return {destination(name, exporter): exporter for name, exporter in exporters.items()}


def named_exporters(exporters) -> dict[str, LogRecordExporter]:
    """Exporter objects given in code, by destination (:func:`destination`): a mapping's names are kept;
    a list is named by class (``module.Class``, ``#2`` for a second one of the same class and target)."""
    if isinstance(exporters, dict):
        return by_destination({str(name): exporter for name, exporter in exporters.items()})
    named: dict[str, LogRecordExporter] = {}
    for exporter in exporters:
        base = destination(f"{type(exporter).__module__}.{type(exporter).__qualname__}", exporter)
        name, n = base, 1
        while name in named:
            n += 1
            name = f"{base}#{n}"
        named[name] = exporter
    return named


class LoggerProviderExporter(LogRecordExporter):
    """Durable delivery into a ``LoggerProvider`` configured in code: spooled records are emitted through
    the provider's own processors (and so its exporters), then the provider is flushed.

    What is lost against exporters otel-audit calls itself: "delivered" means handed to the provider and
    flushed, since the SDK's processors do not report whether their exporter reached the collector.  And
    records that ended processes left behind are not delivered through it (the provider would stamp them
    with this process's resource); ``otel-audit flush --redirect`` delivers those.
    """

    NAME = "logger_provider"
    own_segment_only = True  # orphans carry another process's resource: not re-emitted under ours

    def __init__(self, provider):
        self._provider = provider
        self._loggers: dict[tuple, object] = {}

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for record in batch:
            scope = record.instrumentation_scope
            attributes = dict(scope.attributes or {}) if scope is not None else {}
            key = (scope.name, scope.version, scope.schema_url, tuple(sorted(attributes.items()))) if scope else ()
            logger = self._loggers.get(key)
            if logger is None:
                logger = self._loggers[key] = self._provider.get_logger(
                    scope.name if scope else "otel_audit", scope.version if scope else None,
                    scope.schema_url if scope else None, attributes)
            logger.emit(record.log_record)
        return LogRecordExportResult.SUCCESS if self._provider.force_flush() else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        pass  # the provider is the program's: it shuts it down


def export(name: str, exporter: LogRecordExporter, batch: list[ReadableLogRecord]) -> bool:
    try:
        return exporter.export(batch) == LogRecordExportResult.SUCCESS
    except Exception as exc:
        diagnostics.report(f"exporter {name!r} failed ({type(exc).__name__}: {exc}); retrying",
                           key=f"export:{name}:{type(exc).__name__}")
        return False


# -- delivering segments -----------------------------------------------------------

def _batches(frames: Iterable, report_damage: bool, take: Callable[[bytes], list]) -> Iterable[tuple[list, int]]:
    """``(items, end offset)`` batches from a segment's frames, each frame's payload made into items by
    ``take``: SDK records (:func:`decode_record`) for an exporter, the record taken apart
    (:func:`otlp.resource_logs_parts`) for a transport that takes the bytes.  Damage is reported, never
    fatal; a frame with a valid checksum that is not our encoding is skipped and said."""
    batch: list = []
    end = None
    for item in frames:
        if isinstance(item, spool.Damage):
            if report_damage:
                diagnostics.report(f"spool damage skipped: {item}; the intact records around it are delivered")
            continue
        try:
            batch.extend(take(item.payload))
        except Exception as exc:
            diagnostics.report(f"spool record at offset {item.offset} of an otel-audit segment not decodable "
                               f"({type(exc).__name__}: {exc}); skipped")
        end = item.end
        if len(batch) >= BATCH_SIZE:
            yield batch, end
            batch = []
    if end is not None:
        yield batch, end


def _parts(payload: bytes) -> list[otlp.Parts]:
    return [otlp.resource_logs_parts(payload)]


def _send(name: str, sender: transport.Sender, batch: list[otlp.Parts]) -> bool:
    try:
        return sender(otlp.export_request(batch))
    except Exception as exc:
        diagnostics.report(f"exporter {name!r} failed ({type(exc).__name__}: {exc}); retrying",
                           key=f"export:{name}:{type(exc).__name__}")
        return False


def deliver_segment(path: str, exporters: dict[str, LogRecordExporter], acks: dict[str, int], *,
                    complete_only: bool, stop: int | None = None) -> tuple[dict[str, int], bool]:
    """Ship ``path`` to each exporter from its own acknowledged offset (at least once to each: an
    exporter that failed gets the batch again, the others do not).  Returns the new offsets, and
    whether every exporter has everything readable.  The OTLP exporters get the spooled bytes as
    they are (:mod:`.transport`); the others, SDK records decoded from them."""
    acks = dict(acks)
    complete = True
    for name, exporter in exporters.items():
        start = acks.get(name, 0)
        frames = spool.read_frames(path, start, complete_only=complete_only, stop=stop)
        sender = transport.sender_for(exporter)
        if sender is None:
            batches, ship = _batches(frames, not complete_only, decode_record), partial(export, name, exporter)
        else:
            batches, ship = _batches(frames, not complete_only, _parts), partial(_send, name, sender)
        for batch, end in batches:
            if batch and not ship(batch):
                complete = False
                break
            acks[name] = end
            spool.write_ack(path, acks)
    return acks, complete and bool(exporters)


def count_records(path: str, start: int) -> int:
    return sum(1 for item in spool.read_frames(path, start) if isinstance(item, spool.Frame))


def undelivered(path: str, destinations: Iterable[str], acks: dict[str, int]) -> int:
    """Records some of ``destinations`` has not acknowledged."""
    return count_records(path, min((acks.get(name, 0) for name in destinations), default=0))


class OrphanReport(NamedTuple):
    delivered: int  # records now acknowledged by every exporter
    undelivered: int  # records of orphan segments still in the spool
    live: int  # records in segments a running process holds (its own shipper delivers them)
    refused: int = 0  # segments not delivered because this user does not own them (or their directory)


def _refuse(what: str, exc: OSError) -> None:
    diagnostics.report(f"NOT DELIVERED, possibly forged: {exc}. otel-audit delivers only segments of this "
                       f"user's, in a directory nobody else can write to; remove or fix {what} by hand",
                       key=f"refused:{what}")


def deliver_orphans(directory: str, exporters: dict[str, LogRecordExporter], *, skip: str | None = None,
                    count_live: bool = False, redirect: bool = False) -> OrphanReport:
    """Deliver every segment in ``directory`` whose writer is gone, deleting each once fully delivered.

    A segment is delivered to the destinations it is owed (``<segment>.dest``) that ``exporters`` reach;
    owed ones they do not reach keep it in the spool, and that is said.  ``redirect``: deliver to
    ``exporters`` whatever the segment is owed to.  ``count_live``: also count what live writers have not
    delivered yet.  A directory or segment this user does not own (or others can write to) is refused."""
    try:
        ownfiles.private_directory(directory, create=False)
    except FileNotFoundError:
        return OrphanReport(0, 0, 0)
    except OSError as exc:
        _refuse(directory, exc)
        return OrphanReport(0, 0, 0, refused=len(spool.segments(directory)))
    delivered = left = live = refused = 0
    spool.remove_abandoned_creations(directory)
    for path in spool.segments(directory):
        if path == skip:
            continue
        try:
            lock = spool.OrphanLock.take(path)
        except spool.ForeignSegment as exc:
            _refuse(path, exc)
            refused += 1
            continue
        if lock is None:  # its writer lives, or another process is delivering it
            if count_live:
                live += undelivered(path, spool.read_destinations(path) or exporters, spool.read_ack(path))
            continue
        complete = False
        try:
            owed = _owed(directory, path, exporters, redirect)
            targets = {name: exporters[name] for name in owed if name in exporters}
            acks = _with_legacy_acks(spool.read_ack(path), targets)
            before = undelivered(path, owed, acks)
            acks, complete = deliver_segment(path, targets, acks, complete_only=False)
            complete = complete and len(targets) == len(owed)
            remaining = 0 if complete else undelivered(path, owed, acks)
            delivered += before - remaining
            left += remaining
        finally:
            lock.release(delete=complete)
    return OrphanReport(delivered, left, live, refused)


def _with_legacy_acks(acks: dict[str, int], destinations: Iterable[str]) -> dict[str, int]:
    """Progress recorded by otel-audit before 0.2 is keyed by exporter name alone (``audit_file``), now by
    destination (``audit_file /x.jsonl``): count the old progress for a destination of that name, so an
    upgrade does not deliver those records again."""
    acks = dict(acks)
    for key in destinations:
        name = key.split(" ", 1)[0]
        if key not in acks and name in acks:
            acks[key] = acks[name]
    return acks


def _owed(directory: str, path: str, exporters: dict[str, LogRecordExporter], redirect: bool) -> list[str]:
    """The destinations ``path``'s records are to be delivered to from here."""
    owed = spool.read_destinations(path)
    if redirect:
        return list(exporters)
    if not owed:
        if exporters:
            why = ("owed to no destination (their process had no exporter)" if owed == [] else
                   "without a record of their destinations (an older otel-audit, or killed at their first record)")
            diagnostics.report(f"records in {directory} {why} are delivered to this process's exporters",
                               key=f"no-destinations:{directory}:{owed is None}")
        return list(exporters)
    for missing in (d for d in owed if d not in exporters):
        diagnostics.report(
            f"records owed to {diagnostics.shorten(missing, 240)} are not delivered from here, which is configured for "
            f"{', '.join(exporters) or 'no exporter'}: they stay in the spool (run `otel-audit flush` with that "
            "destination's settings, or `otel-audit flush --redirect` to deliver them here instead)",
            key=f"owed:{missing}")
    return owed


def service_directory(root: str, service_name: str) -> str:
    return os.path.join(root, re.sub(r"[^A-Za-z0-9._-]", "_", service_name) or "unknown")


class Shipper:
    """This process's spool writer, and the thread that ships what it writes (and what others left)."""

    def __init__(self, directory: str, exporter_factory: Callable[[], dict[str, LogRecordExporter]], *, fsync: str,
                 shutdown_timeout: float, max_bytes: int = 1 << 30, interval: float = 0.2,
                 renewable: bool = True):
        """``exporter_factory`` makes the exporters (again in a forked child); ``renewable``: it makes new
        objects each call, so exporters whose connections the program closed can be replaced (exporter
        objects given in code are the program's, and are never abandoned)."""
        self.directory = directory
        self.max_bytes = max_bytes
        self._spool_bytes: int | None = None  # this service's spool size: scanned, then kept up to date
        self._problem: str | None = None  # why the last write or open failed
        self._problem_at = 0.0
        self._largest_record = 4096  # what the next record may need, for the admission check
        self.writer = spool.SegmentWriter(directory, fsync=fsync)
        self._exporter_factory = exporter_factory
        self._renewable = renewable
        self.exporters: dict[str, LogRecordExporter] = {}
        self.shutdown_timeout = shutdown_timeout
        self.interval = interval
        self._acks: dict[str, int] = {}
        self._acks_path: str | None = None
        self._taken_seen = 0
        self._abandoned: list[dict[str, LogRecordExporter]] = []
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self._stopping = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._started_pid: int | None = None
        self._start_lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a lock held by another thread at fork is held forever in the child
            os.register_at_fork(after_in_child=self._renew_start_lock)
        self._last_orphan_scan = float("-inf")
        self._final_scan_done = False
        atexit.register(self.shutdown)

    def _scan_size(self) -> int:
        total = 0
        own, own_size = self.writer.extent()
        for path in spool.segments(self.directory):
            try:
                total += own_size if path == own else os.path.getsize(path)  # (ours: not its reserved zeros)
            except OSError:
                pass
        self._spool_bytes = total
        return total

    def problem(self) -> str | None:
        """Why a record could not be spooled now, or ``None`` (the fail-closed admission check)."""
        used = self._spool_bytes if self._spool_bytes is not None else self._scan_size()
        if used + self._largest_record > self.max_bytes:  # the next record would not fit
            return f"the spool {self.directory} is at its cap of {self.max_bytes} bytes (OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES)"
        if self._problem is not None and time.monotonic() - self._problem_at < RETRY_BROKEN_SPOOL:
            return self._problem
        try:
            self.writer.ensure_open()
        except OSError as exc:
            self._failed(exc)
            return self._problem
        self._problem = None
        return None

    def _failed(self, exc: OSError) -> None:
        self._problem, self._problem_at = f"cannot write the spool {self.directory}: {exc}", time.monotonic()

    def append(self, payload: bytes) -> None:
        """The hot path: on disk before the caller goes on.  Raises ``OSError`` if it could not be."""
        size = len(payload) + spool.HEADER_SIZE
        used = self._spool_bytes if self._spool_bytes is not None else self._scan_size()
        if used + size > self.max_bytes:
            raise SpoolFull(f"the spool {self.directory} is at its cap of {self.max_bytes} bytes "
                            "(OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES)")
        try:
            self.writer.append(payload, room=self.max_bytes - used - size)
        except OSError as exc:
            self._failed(exc)
            raise
        self._spool_bytes = used + size
        self._largest_record = max(self._largest_record, size)
        if self._started_pid != os.getpid():
            with self._start_lock:
                if self._started_pid != os.getpid():
                    self._start()  # the first record, or the first in a forked child (threads do not survive fork)
        wake = self._wake
        if not wake.is_set():  # (set already: the shipper clears it before it reads, so it will read this record)
            wake.set()

    def _renew_start_lock(self) -> None:
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        self._started_pid = os.getpid()
        # A forked child gets exporters of its own: gRPC channels do not survive fork.
        self.exporters = self._exporter_factory()
        self._acks, self._acks_path = {}, None
        self.writer.set_destinations(list(self.exporters))  # what this process's records are owed to
        self._stopping = False
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-audit-shipper", daemon=True)
        self._thread.start()
        # multiprocessing children (DataLoader and Pool workers) leave through os._exit, skipping
        # atexit; multiprocessing's own exit finalizers still run, so ship from there too.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, self.shutdown, exitpriority=0)

    def _run(self) -> None:
        backoff = self.interval
        while True:
            ok = self._ship_once()
            if self._stopping and (not self.exporters or (ok and not self.pending())
                                   or time.monotonic() >= self._deadline):
                return  # with no exporter there is nothing to wait for: the records stay spooled
            backoff = self.interval if ok else min(backoff * 2, MAX_BACKOFF)
            self._wake.wait(min(backoff, max(0.0, self._deadline - time.monotonic())))
            if ok and not self._stopping:
                # records are on disk: wait a moment for more, so that a steady stream of accesses is
                # shipped in requests of many records, not one each (at exit, no waiting)
                self._stop_requested.wait(SHIPMENT_GAP)
            self._wake.clear()

    def _renew_exporters_if_descriptors_were_taken(self) -> None:
        """A program that closed our spool descriptor closed the exporters' connections too, and may have
        reused their numbers: those exporters are abandoned, never closed (their sockets forget their
        descriptors, which may be the program's files now), and new ones take over."""
        taken = self.writer.check()
        if taken == self._taken_seen or not self._renewable:
            return
        self._taken_seen = taken
        ownfiles.forget_sockets(list(self.exporters.values()))
        self._abandoned.append(self.exporters)  # never shut down: that would close what may be the program's
        self.exporters = self._exporter_factory()
        diagnostics.report("the program closes descriptors it did not open: the audit exporters were created "
                           "anew, and their old connections left alone", key="exporters-renewed")

    def _ship_once(self) -> bool:
        try:
            self._renew_exporters_if_descriptors_were_taken()
            ok = True
            path, size = self.writer.extent()
            if path is not None:
                if path != self._acks_path:  # a new segment (first record, or the last one was rotated)
                    self._acks, self._acks_path = {}, path
                self.writer.sync()
                self._acks, ok = deliver_segment(path, self.exporters, self._acks, complete_only=True, stop=size)
            now = time.monotonic()
            # Orphans (ended workers' segments) every few seconds, and once more on the way out.
            final_scan = self._stopping and not self._final_scan_done
            full = self._full_segments()  # this process's own, closed at their size: delivered as orphans, now
            if ok and (final_scan or full or now - self._last_orphan_scan >= ORPHAN_SCAN_INTERVAL):
                self._last_orphan_scan, self._final_scan_done = now, self._stopping
                orphan_exporters = {name: exporter for name, exporter in self.exporters.items()
                                    if not getattr(exporter, "own_segment_only", False)}
                if orphan_exporters:
                    ok = deliver_orphans(self.directory, orphan_exporters, skip=self.writer.path).undelivered == 0
                elif any(p != self.writer.path for p in spool.segments(self.directory)):
                    diagnostics.report(
                        f"records that ended processes left in the spool ({self.directory}) are not delivered "
                        "through the LoggerProvider configured in code (it would stamp them with this process's "
                        "resource): `otel-audit flush --redirect` delivers them to the exporters its "
                        "environment names",
                        key="orphans-need-exporters")
                self._scan_size()  # delivered orphans are gone: room again under the cap
            return ok
        except Exception as exc:
            diagnostics.report_internal_error("the shipper", exc)
            return False

    def _full_segments(self) -> list[str]:
        """This process's segments closed at their size that are still in the spool (not delivered yet)."""
        closed = self.writer.closed
        if closed:
            closed[:] = [path for path in closed if os.path.exists(path)]
        return closed

    def pending(self) -> bool:
        path, size = self.writer.path, self.writer.size  # (not extent(): close_if asks this holding the lock)
        # (then the full ones: one closed after the line above is in that list by now)
        if any(not getattr(e, "own_segment_only", False) for e in self.exporters.values()) and self._full_segments():
            return True  # this process's full segments, not delivered yet
        if path is None:
            return False
        acks = self._acks if path == self._acks_path else {}
        return any(acks.get(name, 0) < size for name in self.exporters) or not self.exporters

    def shutdown(self) -> None:
        """At exit: deliver what this process wrote within the shutdown timeout; the rest stays spooled."""
        thread = self._thread
        if thread is None or self._started_pid != os.getpid():
            return
        self._deadline = time.monotonic() + self.shutdown_timeout
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        thread.join(self.shutdown_timeout + 0.5)  # never hang the program's exit beyond the bound
        if self.pending():
            diagnostics.report(
                f"audit records not yet acknowledged at exit stay in the spool ({self.directory}); the next "
                "process of this service, or `otel-audit flush`, delivers them")
        path = self.writer.path
        if path is not None and path == self._acks_path and not thread.is_alive():
            # audit data should not linger in a second place: every exporter has it, so it goes
            self.writer.close_if(path, delivered=lambda: not self.pending())
        try:
            self.writer.trim()  # what stays for the next process: its records, not the space reserved after them
        except OSError:
            pass
        if not thread.is_alive():
            for exporter in self.exporters.values():
                try:
                    exporter.shutdown()
                except Exception:
                    pass
        self._thread = None
