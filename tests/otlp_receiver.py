"""Real OTLP receivers for tests and benchmarks: a gRPC ``LogsService`` (plus
``TraceService``, for audit spans) and an HTTP ``/v1/logs``.

Both are built from ``opentelemetry-proto`` and decode what the exporter
actually sent.  :func:`flatten` turns requests into one plain dict per log
record, :func:`flatten_spans` one per span, and :func:`records_from_jsonl` does
the same for the ``audit_file`` sink's OTLP/JSON lines, so tests compare the
same shape whatever the wire.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def _any_value(value: common_pb2.AnyValue):
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(key_values) -> dict:
    return {kv.key: _any_value(kv.value) for kv in key_values}


def flatten(requests) -> list[dict]:
    """One dict per log record, in arrival order."""
    records = []
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                scope = {
                    "name": scope_logs.scope.name,
                    "version": scope_logs.scope.version,
                    "attributes": _attributes(scope_logs.scope.attributes),
                }
                for log in scope_logs.log_records:
                    records.append({
                        "resource": resource,
                        "scope": scope,
                        "time_unix_nano": log.time_unix_nano,
                        "observed_time_unix_nano": log.observed_time_unix_nano,
                        "severity_number": log.severity_number,
                        "severity_text": log.severity_text,
                        "body": _any_value(log.body),
                        "event_name": log.event_name,
                        "attributes": _attributes(log.attributes),
                        "trace_id": log.trace_id.hex(),
                        "span_id": log.span_id.hex(),
                    })
    return records


def flatten_spans(requests) -> list[dict]:
    """One dict per span (``ExportTraceServiceRequest``), in arrival order; ids as hex."""
    spans = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({
                        "resource": resource,
                        "scope": scope_spans.scope.name,
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "start_time_unix_nano": span.start_time_unix_nano,
                        "end_time_unix_nano": span.end_time_unix_nano,
                        "status_code": span.status.code,
                        "status_message": span.status.message,
                        "attributes": _attributes(span.attributes),
                    })
    return spans


def _json_any_value(value: dict):
    (kind, inner), = value.items() if value else ((None, None),)
    if kind == "intValue":
        return int(inner)
    if kind == "kvlistValue":
        return {kv["key"]: _json_any_value(kv.get("value", {})) for kv in inner.get("values", [])}
    if kind == "arrayValue":
        return [_json_any_value(v) for v in inner.get("values", [])]
    if kind == "bytesValue":
        return base64.b64decode(inner)
    return inner


LIFECYCLE_EVENT_NAME = "audit.lifecycle"  # otel-audit's own records (started, hook_failed...): see test_lifecycle.py
CHECKPOINT_EVENT_NAME = "audit.checkpoint"  # and the chain's checkpoints: see test_verify.py
OWN_EVENT_NAMES = (LIFECYCLE_EVENT_NAME, CHECKPOINT_EVENT_NAME)


def records_from_jsonl(path, *, lifecycle: bool = False) -> list[dict]:
    """Flattened records from an OTLP/JSON lines file (the ``audit_file`` sink, the collector's file exporter):
    every log record but otel-audit's own (lifecycle records and checkpoints), unless ``lifecycle``."""
    records = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if not line.strip():
                continue
            for resource_logs in json.loads(line).get("resourceLogs", []):
                resource = {kv["key"]: _json_any_value(kv["value"]) for kv in resource_logs["resource"].get("attributes", [])}
                for scope_logs in resource_logs.get("scopeLogs", []):
                    scope_json = scope_logs.get("scope", {})
                    scope = {
                        "name": scope_json.get("name", ""),
                        "version": scope_json.get("version", ""),
                        "attributes": {kv["key"]: _json_any_value(kv["value"]) for kv in scope_json.get("attributes", [])},
                    }
                    for log in scope_logs.get("logRecords", []):
                        records.append({
                            "resource": resource,
                            "scope": scope,
                            "time_unix_nano": int(log.get("timeUnixNano", 0)),
                            "observed_time_unix_nano": int(log.get("observedTimeUnixNano", 0)),
                            "severity_number": log.get("severityNumber", 0),
                            "severity_text": log.get("severityText", ""),
                            "body": _json_any_value(log.get("body", {})),
                            "event_name": log.get("eventName", ""),
                            "attributes": {kv["key"]: _json_any_value(kv["value"]) for kv in log.get("attributes", [])},
                            "trace_id": log.get("traceId", "").lower(),
                            "span_id": log.get("spanId", "").lower(),
                        })
    return records if lifecycle else [r for r in records if r["event_name"] not in OWN_EVENT_NAMES]


class _Collected:
    def __init__(self):
        self.requests: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.headers: list[dict[str, str]] = []  # of each logs request: gRPC metadata, or HTTP headers (lower-case)
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def _append(self, requests: list, request) -> None:
        with self._changed:
            requests.append(request)
            self._changed.notify_all()

    def add(self, request) -> None:
        self._append(self.requests, request)

    def records(self, *, lifecycle: bool = False) -> list[dict]:
        """The records received: every log record but otel-audit's own (lifecycle, checkpoints), unless ``lifecycle``."""
        with self._lock:
            records = flatten(list(self.requests))
        return records if lifecycle else [r for r in records if r["event_name"] not in OWN_EVENT_NAMES]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Records once at least ``count`` arrived (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len(records) >= count or time.monotonic() >= deadline:
                return records
            with self._changed:
                self._changed.wait(0.05)

    def _add_trace_request(self, request) -> None:
        self._append(self.trace_requests, request)

    def spans(self) -> list[dict]:
        with self._lock:
            return flatten_spans(list(self.trace_requests))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.trace_requests.clear()


class GrpcLogsReceiver(_Collected):
    """``opentelemetry.proto.collector.logs.v1.LogsService`` on 127.0.0.1:<port>, and the
    ``TraceService`` on the same port (its requests in :attr:`trace_requests`, see :meth:`spans`)."""

    def __init__(self, port: int = 0, delay: float = 0.0):
        super().__init__()
        receiver = self

        class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                receiver._add_trace_request(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                if delay:
                    time.sleep(delay)  # a slow collector
                receiver.headers.append({k.lower(): v for k, v in context.invocation_metadata()})
                receiver.add(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceServicer(), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> "GrpcLogsReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)


class HttpLogsReceiver(_Collected):
    """OTLP/HTTP protobuf ``POST /v1/logs`` on 127.0.0.1:<port>, and ``/v1/traces`` (see :meth:`spans`)."""

    def __init__(self, port: int = 0):
        super().__init__()
        receiver = self
        services = {  # path -> (request type, response type, where requests go)
            "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse,
                         receiver.add),
            "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse,
                           receiver._add_trace_request),
        }

        connections = self._connections = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector: exporters hold pooled connections

            def setup(self):
                super().setup()
                connections.add(self.connection)

            def finish(self):
                connections.discard(self.connection)
                super().finish()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path not in services or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request_type, response_type, collect = services[self.path]
                if collect == receiver.add:
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                request = request_type()
                request.ParseFromString(body)
                collect(request)
                payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep test output clean
                pass

        ThreadingHTTPServer.allow_reuse_address = True  # restart on the same port in outage tests
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "HttpLogsReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        for connection in list(self._connections):  # a stopped collector drops its kept-alive connections too
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
