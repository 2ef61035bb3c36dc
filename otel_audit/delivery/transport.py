"""Spooled records to the stock OTLP exporters' transports, as the bytes they are.

The spool holds each record as serialized OTLP (``ResourceLogs``).  Decoding them back into SDK
objects only for the exporter to encode them again cost about 190 µs a record on the shipper
thread; an ``ExportLogsServiceRequest`` is the concatenation of its ``ResourceLogs``
(:func:`otel_audit.delivery.otlp.export_request`), so for the two OTLP exporters the request is
assembled from the spooled bytes and handed to the exporter's own transport:

* **OTLP/HTTP**: the exporter's HTTP client (``exporter._client.export(bytes)``): its endpoint,
  headers, compression, TLS certificate and client key, timeout, session and retries, exactly
  as the exporter uses them for the requests it encodes itself.
* **OTLP/gRPC**: the exporter's channel (endpoint, TLS credentials, compression and channel
  options are the channel's), its headers as call metadata and its timeout, on the
  ``LogsService/Export`` method with the request bytes passed through; a channel that reports
  ``UNAVAILABLE`` is renewed as the exporter renews it.

The ``audit_file`` sink takes the request too (``AuditFileLogExporter.export_request``: the same
OTLP/JSON line its ``export`` writes).  Only these attributes of the stock exporters are relied on;
an exporter without them (another version, another class, ``console``) gets SDK records decoded
from the spool, as before (:func:`sender_for` returns ``None``).  Retrying is the shipper's: a failed request is sent
again with backoff until it is acknowledged.
"""

from __future__ import annotations

import logging
from typing import Callable

# (request bytes) -> delivered
Sender = Callable[[bytes], bool]

_LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def sender_for(exporter: object) -> Sender | None:
    """How to send a serialized request through ``exporter``'s own transport, or ``None``."""
    module = type(exporter).__module__
    if callable(getattr(exporter, "export_request", None)) and module == "otel_audit.delivery.sink":
        return exporter.export_request  # the audit_file sink: the same lines, from the bytes
    if module.startswith("opentelemetry.exporter.otlp.proto.http") and callable(
            getattr(getattr(exporter, "_client", None), "export", None)):
        return _HttpSender(exporter)
    if module.startswith("opentelemetry.exporter.otlp.proto.grpc") and hasattr(exporter, "_channel") and hasattr(
            exporter, "_headers") and callable(getattr(exporter, "_initialize_channel_and_stub", None)):
        return _GrpcSender(exporter)
    return None


class _HttpSender:
    def __init__(self, exporter):
        self._exporter = exporter

    def __call__(self, request: bytes) -> bool:
        if getattr(self._exporter, "_shutdown", False):
            return False
        return bool(self._exporter._client.export(request).success)  # which logs its failures, as for its own


class _GrpcSender:
    def __init__(self, exporter):
        self._exporter = exporter
        self._channel = self._call = None

    def __call__(self, request: bytes) -> bool:
        import grpc

        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        exporter = self._exporter
        if getattr(exporter, "_shutdown", False) or exporter._channel is None:
            return False
        if exporter._channel is not self._channel:  # the exporter made a new channel: a new call on it
            self._channel = exporter._channel
            self._call = self._channel.unary_unary(_LOGS_EXPORT, request_serializer=None,
                                                   response_deserializer=ExportLogsServiceResponse.FromString)
        try:
            self._call(request, metadata=exporter._headers, timeout=exporter._timeout)
            return True
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:  # reconnect next time, as the exporter itself does
                try:
                    exporter._channel.close()
                except Exception:
                    pass
                exporter._initialize_channel_and_stub()
            # logged where and as the exporter logs the failures of the requests it sends itself
            logging.getLogger(type(exporter).__module__).warning(
                "Failed to export logs to %s, error code: %s, error details: %s; otel-audit retries from the spool",
                getattr(exporter, "_endpoint", "?"), code, error.details())
            return False
