"""The recorder: turns one finished access into one OpenTelemetry log record.

Hooks describe the resource and the call; the recorder adds who (OS user,
end user), the outcome, ``audit.seq`` and the body, and emits through the
OpenTelemetry logs API, so records leave through whatever pipeline the SDK was
configured with (OTLP gRPC/HTTP, console, the embedded ``audit_file`` sink).

With ``OTEL_PYTHON_AUDIT_SPANS=true`` each access is also a span, made when the
access has finished (from its start time to now) under the span that was
current during the call; the record is emitted inside it, so it carries the
span's trace and span id.  Made afterwards, it is no parent of spans other
instrumentations made during the call: they are its siblings.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
import uuid
import weakref
from typing import Callable

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider, SeverityNumber, get_logger, get_logger_provider
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_audit import chain as audit_chain
from otel_audit import diagnostics, schema
from otel_audit.config import AuditConfig
from otel_audit.context import current_enduser, in_audited_call
from otel_audit.resources import Redactor, ResourcePolicy, printable
from otel_audit.version import __version__

SERVICE_INSTANCE_ID = "service.instance.id"
HEADS_KEPT = 2048  # bodies and hashed canonical heads kept (a call site and resource each); starts over when full
_PLAIN = frozenset({str, int})

_OUTSIDE_ANY_TRACE = trace.set_span_in_context(trace.INVALID_SPAN)  # the context of lifecycle records

# (exception, attributes) -> (outcome, error.type); hooks that know better pass their
# own, which may also add what the error carries (an S3 request id) to attributes.
ErrorClassifier = Callable[[BaseException, dict], "tuple[str, str]"]


def exception_type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def classify_exception(exc: BaseException, attributes: dict | None = None) -> tuple[str, str]:
    outcome = schema.OUTCOME_DENIED if isinstance(exc, PermissionError) else schema.OUTCOME_FAILURE
    return outcome, exception_type_name(exc)


def login_name() -> str:
    """``getpass.getuser()``: the first of ``LOGNAME``, ``USER``, ``LNAME``, ``USERNAME`` that is set, else
    the passwd entry's name.  Not imported from ``getpass``, which loads ``termios`` (a C extension, for
    its password prompt): 2.4 million instructions at every audited program's start."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        name = os.environ.get(variable)
        if name:
            return name
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _os_user() -> tuple[str, str]:
    uid = os.getuid() if hasattr(os, "getuid") else -1
    try:
        name = login_name()
    except Exception:  # a uid with no passwd entry and no LOGNAME (common in containers)
        name = f"uid:{uid}"
    return printable(name), str(uid)


class AuditRecorder:
    """Emits audit records; one per process is enough (the instrumentor owns it)."""

    def __init__(self, config: AuditConfig | None = None, logger_provider: LoggerProvider | None = None,
                 tracer_provider: trace.TracerProvider | None = None, exporters=None):
        self.config = config or AuditConfig.from_env()
        self.policy = ResourcePolicy(self.config)
        self._redact = Redactor(self.config.redact) if self.config.redact else None
        scope_attributes = {"audit.schema.version": schema.SCHEMA_VERSION}
        self._logger = get_logger(schema.SCOPE_NAME, __version__, logger_provider=logger_provider,
                                  attributes=scope_attributes)
        self._scope = InstrumentationScope(schema.SCOPE_NAME, __version__, None, scope_attributes)
        self._provider = logger_provider or get_logger_provider()
        self._tracer = (trace.get_tracer(schema.SCOPE_NAME, __version__, tracer_provider=tracer_provider,
                                         attributes=scope_attributes) if self.config.spans else None)
        self._fallback_resource: Resource | None = None  # when the provider has none (no SDK configured)
        self._warn_if_records_are_not_identifiable(self._provider)
        # durable delivery's spool writer and shipper thread: made for the first record, not at start-up
        self._durable = self.config.delivery == "durable"
        self._exporters = exporters
        self._shipper = None
        self.lost = 0  # records that could not be spooled (sent through the in-memory pipeline instead)
        self._not_spooled = get_meter(schema.SCOPE_NAME, __version__).create_counter(
            "otel_audit.records.not_spooled", unit="{record}",
            description="audit records that could not be written to the durable spool")
        self._service: str | None = None
        self._chain_key, self._signer = self._chain_keys()
        self._reset_process_state()
        self._guard = None
        self._guard = self._policy_guard() if self.config.policy else None
        if self._guard is not None and self._guard.policy is None:  # (one that loads is in "started")
            self.lifecycle(schema.LIFECYCLE_POLICY_FAILED, {schema.AUDIT_LIFECYCLE_DETAIL: printable(self._guard.error or "")})
        if hasattr(os, "register_at_fork"):
            # A forked child is a new process: new pid, and (since the SDK gives it a new
            # service.instance.id) a new audit.seq range starting at 1.
            os.register_at_fork(after_in_child=self._reset_process_state)

    def _resource(self) -> Resource:
        # Read each time: the SDK renews service.instance.id in a forked child.
        resource = getattr(self._provider, "resource", None)
        if not isinstance(resource, Resource):
            if self._fallback_resource is None:
                self._fallback_resource = Resource.create()
            resource = self._fallback_resource
        return resource

    def shipper(self):
        """Durable delivery's :class:`~otel_audit.delivery.shipper.Shipper` (made by the first call), or
        ``None`` with ``delivery="memory"``."""
        if self._shipper is None and self._durable:
            with self._shipper_lock:
                if self._shipper is None and self._durable:
                    try:
                        self._shipper = self._durable_shipper(self._exporters)
                    except Exception as exc:
                        self._durable = False
                        diagnostics.report(f"durable delivery could not start ({type(exc).__name__}: {exc}): audit "
                                           "records go through the in-memory pipeline only (lost if the process dies)")
        return self._shipper

    def _durable_shipper(self, exporters):
        """Where durable delivery ships to: the exporter objects given in code; else the exporters
        ``OTEL_LOGS_EXPORTER`` names; else, when it names none, the SDK ``LoggerProvider`` the program
        configured in code (given, or the global one)."""
        from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider

        from otel_audit.delivery import otlp
        from otel_audit.delivery import shipper as delivery

        self._encoder = otlp.LogRecordEncoder()
        service = str(self._resource().attributes.get("service.name", "unknown_service"))
        factory, renewable = delivery.exporters_from_env, True
        if exporters is not None:
            named = delivery.named_exporters(exporters)
            factory, renewable = (lambda: dict(named)), False
        elif isinstance(self._provider, SdkLoggerProvider) and delivery.logs_exporter_unset():
            if delivery.has_processors(self._provider):
                through_provider = {delivery.LoggerProviderExporter.NAME: delivery.LoggerProviderExporter(self._provider)}
                factory, renewable = (lambda: dict(through_provider)), False
            else:
                diagnostics.report("the LoggerProvider configured in code has no log record processor, and "
                                   "OTEL_LOGS_EXPORTER is not set: audit records stay in the spool (add a processor "
                                   "with an exporter, or pass exporters= to instrument())")
                factory = dict
        return delivery.Shipper(delivery.service_directory(self.config.spool_dir, service), factory,
                                fsync=self.config.spool_fsync, shutdown_timeout=self.config.shutdown_timeout,
                                max_bytes=self.config.spool_max_bytes, renewable=renewable)

    def admit(self, accesses: "list[dict] | tuple" = ()) -> None:
        """The decision every access point asks for before the access happens, ``accesses`` being the
        attributes of each resource it touches.  Refuses it with ``PermissionError``:

        * fail-closed (``OTEL_PYTHON_AUDIT_ON_FAILURE=closed``) when its record could not be spooled
          (reported once on stderr: it cannot be spooled either);
        * with :class:`AccessDenied` when the access policy denies any of its resources (each denied
          one recorded, outcome ``denied``).  With a policy in force, every access's attributes get its
          ``audit.policy.decision`` and ``audit.policy.rule``.
        """
        if self._durable and self.config.on_failure == "closed":
            try:
                shipper = self.shipper()
                problem = "durable delivery could not start" if shipper is None else shipper.problem()
            except Exception as exc:  # whatever went wrong, the record could not be vouched for
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                refusal = PermissionError(f"otel-audit refused this access because it could not be audited: {problem} "
                                          "(OTEL_PYTHON_AUDIT_ON_FAILURE=closed)")
                diagnostics.report(str(refusal), key="refusing")
                raise refusal
        guard = self._guard
        if guard is None or not accesses:
            return
        refused = []
        try:
            if self._service is None:
                self._service = str(self._resource().attributes.get("service.name", "unknown_service"))
            for attributes in accesses:
                verdict = guard.verdict(attributes, self._principal, self._service, current_enduser)
                attributes[schema.AUDIT_POLICY_DECISION] = verdict.decision
                attributes[schema.AUDIT_POLICY_RULE] = verdict.rule
                if verdict.refuse:
                    refused.append(attributes)
        except Exception as exc:  # a fault in deciding: as if no policy could be loaded
            diagnostics.report_internal_error("the access policy", exc)
            if self.config.on_failure != "closed":
                return
            from otel_audit.policy import UNLOADABLE_RULE

            refused = list(accesses)
            for attributes in refused:
                attributes[schema.AUDIT_POLICY_DECISION] = schema.DECISION_DENY
                attributes[schema.AUDIT_POLICY_RULE] = UNLOADABLE_RULE
        if refused:
            start_ns = time.time_ns()
            for attributes in refused:
                self.emit(attributes, start_ns=start_ns, outcome=schema.OUTCOME_DENIED, error_type=AccessDenied.__name__)
            raise AccessDenied(refused, guard.path)

    def _policy_guard(self):
        from otel_audit import policy as access_policy

        path = os.path.abspath(self.config.policy)

        def read(path: str):
            token = in_audited_call.set(True)  # otel-audit reading its policy is not an access to audit
            try:
                return access_policy.load(path)
            finally:
                in_audited_call.reset(token)

        def changed(policy, error) -> None:
            if self._guard is not None:  # a change (what is in force at start is said by "started")
                if policy is not None:
                    self.lifecycle(schema.LIFECYCLE_POLICY_LOADED)
                else:
                    self.lifecycle(schema.LIFECYCLE_POLICY_FAILED, {schema.AUDIT_LIFECYCLE_DETAIL: printable(error or "")})
            if policy is not None:
                mode = self.config.policy_mode or policy.mode
                diagnostics.report(
                    f"access policy {diagnostics.shorten(path)} in force: {len(policy.rules)} rule(s), default "
                    f"{policy.default}, mode {mode}" + (" (set by OTEL_PYTHON_AUDIT_POLICY_MODE)" if
                                                        self.config.policy_mode else "") +
                    f", sha256 {policy.digest[:16]}", key=f"policy:{policy.digest}:{mode}")
            elif self.config.on_failure == "closed":
                diagnostics.report(f"ACCESS POLICY NOT LOADED: {error}; every audited access is DENIED until it "
                                   "can be loaded (OTEL_PYTHON_AUDIT_ON_FAILURE=closed)", key=f"policy-error:{error}")
            else:
                diagnostics.report(f"ACCESS POLICY NOT ENFORCED: {error}; audited accesses go on unchecked, their "
                                   "records say audit.policy.decision=not_enforced (OTEL_PYTHON_AUDIT_ON_FAILURE=open)",
                                   key=f"policy-error:{error}")

        guard = access_policy.PolicyGuard(path, on_failure=self.config.on_failure, mode=self.config.policy_mode,
                                          on_change=changed, read=read)
        guard.start()
        return guard

    def close(self) -> None:
        """Stop what the recorder runs besides delivery (the policy file's watcher)."""
        if self._guard is not None:
            self._guard.stop()

    @staticmethod
    def _warn_if_records_are_not_identifiable(provider: LoggerProvider) -> None:
        # (service.instance.id, audit.seq) identifies a record.  The SDK's Resource.create() sets the
        # id; a Resource built by hand may lack it, and consumers could not tell records apart.
        resource = getattr(provider, "resource", None)
        attributes = getattr(resource, "attributes", None)
        if attributes is not None and SERVICE_INSTANCE_ID not in attributes:
            diagnostics.report(
                "the LoggerProvider's resource has no service.instance.id, so (service.instance.id, audit.seq) "
                "does not identify records across processes; build it with Resource.create() or set "
                "OTEL_RESOURCE_ATTRIBUTES=service.instance.id=<unique id>"
            )

    def _reset_process_state(self) -> None:
        user_name, user_id = _os_user()
        self._identity = {
            schema.USER_NAME: user_name,
            schema.USER_ID: user_id,
            schema.PROCESS_PID: os.getpid(),
        }
        self._principal = (user_name, user_id)  # what a policy's user globs match
        self._seq = itertools.count(1)
        self._started = False  # this process's "started" lifecycle record written (before its first record)
        self._started_ns = time.time_ns()
        self._lifecycle_lock = threading.Lock()
        self._shipper_lock = threading.Lock()  # (one held by another thread at fork would be held forever)
        self._record_id_prefix = uuid.uuid4().hex  # new in every process, forked children included
        # the chain: a stream per process (the SDK gives a forked child its own service.instance.id)
        self._chain = audit_chain.Chain(self._chain_key, self._signer) if self.config.chain else None
        self._record_lock = threading.Lock()  # audit.seq and the chain advance together, in one order
        self._since_checkpoint = 0
        self._checkpoint_ns = time.time_ns()
        self._closed = False  # the closing checkpoint written (a record after it is followed by another)
        self._heads: dict[tuple, tuple] = {}  # an access's attributes -> (resource, severity, body, hashed head)

    def emit(
        self,
        attributes: dict,
        *,
        start_ns: int,
        outcome: str = schema.OUTCOME_SUCCESS,
        error_type: str | None = None,
    ) -> None:
        """Complete ``attributes`` (resource, api, action, call site) and emit the record.

        Never raises: a failure here is reported once on stderr.
        """
        try:
            if not self._started:
                self._start_trail()
            attributes[schema.AUDIT_OUTCOME] = outcome
            if outcome == schema.OUTCOME_SUCCESS:
                severity, severity_text = SeverityNumber.INFO, "INFO"
            else:
                severity, severity_text = SeverityNumber.WARN, "WARN"
            if error_type is not None:
                attributes[schema.ERROR_TYPE] = printable(error_type)
            attributes.update(self._identity)
            enduser = current_enduser()
            if enduser is not None:
                attributes[schema.ENDUSER_ID] = printable(enduser)
            if self._redact is not None:
                self._redact(attributes)
            body, head, key = self._head(severity, severity_text, attributes)
            fields = dict(timestamp=start_ns, severity_number=severity, severity_text=severity_text,
                          attributes=attributes, event_name=schema.EVENT_NAME)
            span = None
            with self._record_lock:
                seq = attributes[schema.AUDIT_SEQ] = next(self._seq)
                attributes[schema.AUDIT_RECORD_ID] = f"{self._record_id_prefix}-{seq}"
                if self._tracer is not None:
                    span = self._start_span(attributes, start_ns, outcome, error_type)
                    fields["context"] = trace.set_span_in_context(span)
                span_context = trace.get_current_span(fields.get("context")).get_span_context()
                fields["observed_timestamp"] = time.time_ns()
                if self._chain is not None:
                    self._link(fields, body, span_context, head)
            try:
                if not self._durable or not self._spool(fields, body, span_context, key):
                    self._logger.emit(body=body, **fields)
            finally:
                if span is not None:
                    span.end()
            if self._chain is not None and (
                    self._closed or self._since_checkpoint >= self.config.checkpoint_records
                    or fields["observed_timestamp"] - self._checkpoint_ns >= self.config.checkpoint_seconds * 1e9):
                self._checkpoint(final=self._closed)
        except Exception as exc:
            diagnostics.report_internal_error("the recorder", exc)

    # -- the chain (otel_audit.chain) ---------------------------------------------
    def _chain_keys(self):
        """The HMAC key and the Ed25519 signing key configured, each ``None`` when unset or unusable (said)."""
        key = signer = None
        if self.config.chain and self.config.chain_key_file:
            try:
                key = audit_chain.load_chain_key(self.config.chain_key_file)
            except Exception as exc:
                diagnostics.report(f"{exc}: the records' chain is plain SHA-256, NOT keyed (OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE)")
        if self.config.chain and self.config.signing_key_file:
            try:
                signer = audit_chain.load_signing_key(self.config.signing_key_file)
            except Exception as exc:
                diagnostics.report(f"{exc}: checkpoints are NOT signed (OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE)")
        return key, signer

    def _head(self, severity, severity_text: str, attributes: dict):
        """An access's body, its canonical form's head hashed (``otel_audit.chain``; ``None`` without the
        chain) and the key they are kept by (``None``: not kept): what repeats from one record to the next (an access of one resource from one line of code),
        kept by the attributes (all but ``audit.seq`` and ``audit.record.id``, not set yet) when every value is
        a plain string or integer (so that ``True == 1`` never finds another's)."""
        resource = self._resource()
        key = tuple(attributes.items()) if _PLAIN.issuperset(map(type, attributes.values())) else None
        if key is not None:
            known = self._heads.get(key)
            if known is not None and known[0] is resource and known[1] is severity:
                return known[2], known[3], key
        body = schema.format_body(attributes)
        head = None if self._chain is None else self._chain.head(
            resource, schema.SCOPE_NAME, __version__, severity.value, severity_text, body, schema.EVENT_NAME, attributes)
        if key is not None:
            if len(self._heads) >= HEADS_KEPT:
                self._heads.clear()
            self._heads[key] = (resource, severity, body, head)
        return body, head, key

    def _link(self, fields: dict, body: str, span_context, head=None) -> None:
        """``audit.chain.hash`` of the record (call holding the record lock, right after its ``audit.seq``);
        ``head`` from :meth:`_head`, else hashed here."""
        attributes = fields["attributes"]
        if head is None:
            head = self._chain.head(self._resource(), schema.SCOPE_NAME, __version__, fields["severity_number"].value,
                                    fields["severity_text"], body, fields["event_name"], attributes)
        attributes[schema.AUDIT_CHAIN_HASH] = self._chain.link(self._chain.digest(
            head, fields["timestamp"], fields["observed_timestamp"], span_context.trace_id, span_context.span_id,
            int(span_context.trace_flags), attributes[schema.AUDIT_SEQ], attributes[schema.AUDIT_RECORD_ID]))
        self._since_checkpoint += 1

    def _checkpoint(self, *, final: bool) -> None:
        """A checkpoint record: the stream's length so far (its ``audit.seq``) and last hash, signed when a
        signing key is configured; ``final``: the stream's closing record."""
        chain = self._chain
        record = {schema.AUDIT_CHAIN_ALGORITHM: chain.algorithm, schema.AUDIT_CHECKPOINT_FINAL: final}
        if chain.key_id is not None:
            record[schema.AUDIT_CHECKPOINT_KEY_ID] = chain.key_id
        self._checkpoint_ns = time.time_ns()
        self._write_own(schema.CHECKPOINT_EVENT_NAME, record, self._checkpoint_ns, False, sign=True)

    def close_trail(self) -> None:
        """The stream's closing checkpoint (at exit, a worker's exit, ``uninstrument()``); nothing when this
        process wrote no record, or nothing since it closed.  Never raises."""
        try:
            if self._chain is None or not self._started or (self._closed and self._since_checkpoint == 0):
                return
            self._closed = True
            self._checkpoint(final=True)
        except Exception as exc:
            diagnostics.report_internal_error("closing the audit trail's chain", exc)

    # -- audit of auditing ---------------------------------------------------
    def lifecycle(self, event: str, attributes: dict | None = None, *, if_started: bool = False) -> None:
        """Record what happened to auditing itself (``audit.lifecycle``, see the schema module), in the same
        sequence, with the same resource and identity as the accesses.  Never raises.

        The process's first record, whatever it is, comes after a ``started`` record: a program that
        accesses nothing writes nothing, and its start pays nothing for it.  ``if_started``: only when
        this process has written records (``stopped``: nothing to close otherwise).
        """
        try:
            if if_started and not self._started:
                return
            if not self._started:
                self._start_trail()
            warn = event in (schema.LIFECYCLE_HOOK_FAILED, schema.LIFECYCLE_POLICY_FAILED)
            self._write_lifecycle(event, attributes, time.time_ns(), warn)
        except Exception as exc:
            diagnostics.report_internal_error("recording otel-audit's own lifecycle", exc)

    def _start_trail(self) -> None:
        with self._lifecycle_lock:  # one "started" per process, first in its sequence whichever thread comes
            if self._started:
                return
            try:
                self._write_lifecycle(schema.LIFECYCLE_STARTED, {
                    schema.AUDIT_HOOKS: tuple(self.config.hooks), schema.AUDIT_DELIVERY: self.config.delivery,
                }, self._started_ns, False)
            except Exception as exc:
                diagnostics.report_internal_error("recording that otel-audit started", exc)
            self._started = True
            # the closing checkpoint before the shipper's last shipment (atexit runs the last registered
            # first; multiprocessing's finalizers, which workers leaving through os._exit still run, the
            # highest priority first: the shipper's is 0)
            atexit.register(_close_trail_at_exit, weakref.ref(self))
            mp_util = sys.modules.get("multiprocessing.util")
            if mp_util is not None:
                mp_util.Finalize(None, _close_trail_at_exit, (weakref.ref(self),), exitpriority=1)

    def _write_lifecycle(self, event: str, attributes: dict | None, when_ns: int, warn: bool) -> None:
        record = {schema.AUDIT_LIFECYCLE_EVENT: event, schema.AUDIT_VERSION: __version__, **(attributes or {})}
        guard = self._guard
        if guard is not None:
            record[schema.AUDIT_POLICY_PATH] = printable(guard.path)
            if guard.policy is not None:
                record[schema.AUDIT_POLICY_SHA256] = guard.policy.digest
                record[schema.AUDIT_POLICY_MODE] = guard.mode
        if event == schema.LIFECYCLE_STARTED and self._chain is not None:
            record[schema.AUDIT_CHAIN_ALGORITHM] = self._chain.algorithm
            if self._chain.key_id is not None:
                record[schema.AUDIT_CHECKPOINT_KEY_ID] = self._chain.key_id
        self._write_own(schema.LIFECYCLE_EVENT_NAME, record, when_ns, warn)

    def _write_own(self, event_name: str, record: dict, when_ns: int, warn: bool, *, sign: bool = False) -> None:
        """A record about auditing itself (lifecycle, checkpoint), in the same sequence and chain as the accesses."""
        record.update(self._identity)
        fields = dict(timestamp=when_ns, severity_number=SeverityNumber.WARN if warn else SeverityNumber.INFO,
                      severity_text="WARN" if warn else "INFO", attributes=record, event_name=event_name,
                      context=_OUTSIDE_ANY_TRACE)  # (not the trace of whichever access came first)
        span_context = trace.INVALID_SPAN_CONTEXT
        with self._record_lock:
            seq = record[schema.AUDIT_SEQ] = next(self._seq)
            record[schema.AUDIT_RECORD_ID] = f"{self._record_id_prefix}-{seq}"
            fields["observed_timestamp"] = time.time_ns()
            body = (schema.checkpoint_body(record) if event_name == schema.CHECKPOINT_EVENT_NAME
                    else schema.lifecycle_body(record))
            if self._chain is not None:
                self._link(fields, body, span_context)
                if sign:
                    self._since_checkpoint = 0  # (a checkpoint counts itself)
                    signature = self._chain.sign(str(self._resource().attributes.get(SERVICE_INSTANCE_ID, "")), seq,
                                                 record[schema.AUDIT_CHAIN_HASH])
                    if signature is not None:
                        record[schema.AUDIT_CHECKPOINT_SIGNATURE] = signature
        if not self._durable or not self._spool(fields, body, span_context):
            self._logger.emit(body=body, **fields)

    def _start_span(self, attributes: dict, start_ns: int, outcome: str, error_type: str | None) -> trace.Span:
        """The access as a span: begun at the access's start, under the span current during the call."""
        span = self._tracer.start_span(
            f"audit {attributes[schema.AUDIT_ACTION]} {attributes[schema.AUDIT_API]}",
            kind=trace.SpanKind.INTERNAL, attributes=attributes, start_time=start_ns)
        if outcome != schema.OUTCOME_SUCCESS:
            span.set_status(trace.Status(trace.StatusCode.ERROR, schema.outcome_text(outcome, error_type)))
        return span

    def _spool(self, fields: dict, body: str, span_context, key: tuple | None = None) -> bool:
        """Durable delivery: the record on disk before the audited call returns.  False if it could not be.
        ``span_context``: what the SDK's LogRecord would take from the context (the span's, else the
        current one's), encoded with the rest directly (otel_audit.delivery.otlp); ``key``: the record's
        repeating attributes from :meth:`_head` (the encoder's block key, then)."""
        shipper = self._shipper or self.shipper()
        if shipper is None:
            return False
        encoder = self._encoder
        payload = encoder.resource_logs(self._resource(), self._scope, encoder.log_record(
            timestamp=fields["timestamp"], observed_timestamp=fields["observed_timestamp"],
            severity_number=fields["severity_number"].value, severity_text=fields["severity_text"],
            body=body,
            attributes=fields["attributes"], event_name=fields["event_name"], trace_id=span_context.trace_id,
            span_id=span_context.span_id, trace_flags=int(span_context.trace_flags), block_key=key))
        try:
            shipper.append(payload)
            return True
        except OSError as exc:
            self.lost += 1
            self._not_spooled.add(1)
            diagnostics.report(
                f"AUDIT RECORDS NOT SPOOLED: {exc}; sending them through the in-memory pipeline only "
                "(lost if the process dies or the collector is down); counted in the metric "
                "otel_audit.records.not_spooled", key="spool-write")
            return False

    def emit_error(
        self,
        attributes: dict,
        *,
        start_ns: int,
        error: BaseException,
        classify_error: ErrorClassifier = classify_exception,
    ) -> None:
        """Emit a failed access: ``classify_error`` turns the exception into outcome and ``error.type``."""
        try:
            outcome, error_type = classify_error(error, attributes)
        except Exception as exc:
            diagnostics.report_internal_error("classifying an error", exc)
            outcome, error_type = schema.OUTCOME_FAILURE, exception_type_name(error)
        self.emit(attributes, start_ns=start_ns, outcome=outcome, error_type=error_type)

class AccessDenied(PermissionError):
    """The access policy (``OTEL_PYTHON_AUDIT_POLICY``) denied an access; raised before it happened.

    ``rules``: the id of the deciding rule per denied resource; ``resources``: their URIs.
    """

    def __init__(self, denied: list[dict], policy: str):
        self.resources = [str(a.get(schema.AUDIT_RESOURCE_URI)) for a in denied]
        self.rules = [str(a.get(schema.AUDIT_POLICY_RULE)) for a in denied]
        first = denied[0]
        super().__init__(
            f"otel-audit: the access policy {policy} denies {first.get(schema.AUDIT_ACTION)} of "
            f"{first.get(schema.AUDIT_RESOURCE_URI)} by {first.get(schema.AUDIT_API)} "
            f"(rule {first.get(schema.AUDIT_POLICY_RULE)})" + (f" and {len(denied) - 1} more" if len(denied) > 1 else ""))


def _close_trail_at_exit(recorder: "weakref.ref[AuditRecorder]") -> None:
    alive = recorder()
    if alive is not None:
        alive.close_trail()


_default_recorder: AuditRecorder | None = None


def set_default_recorder(recorder: AuditRecorder | None) -> None:
    global _default_recorder
    _default_recorder = recorder


def default_recorder() -> AuditRecorder:
    """The instrumentor's recorder, or one made from the environment for manual use."""
    global _default_recorder
    if _default_recorder is None:
        _default_recorder = AuditRecorder()
    return _default_recorder
