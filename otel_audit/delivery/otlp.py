"""OTLP protobuf for audit records, written directly: the bytes the SDK's encoder makes, at a fraction of its cost.

An audit record is always the same shape (a handful of string and integer attributes, a string
body, timestamps, a severity, maybe a trace context), and a serialized protobuf message is the
concatenation of its fields.  So the record path does not build SDK objects and protobuf
messages to serialize them: it writes each field's bytes, in field-number order, exactly as the
protobuf runtime does (``tests/test_durable.py`` compares the two byte for byte and field by field).
What repeats is encoded once and kept: each attribute key, and each (key, value) pair of a string or
an integer (the user, the API, the action, the paths a program reads again and again, its pid, a
call site's line), in a bounded cache: a repeated attribute costs one dictionary lookup.
The resource and the scope, constant in a process, are encoded once by the SDK's own encoder
(imported with protobuf at the first record, not when a program starts).

Only the record path uses this; everything that reads records (the shipper's fallback for
exporters it cannot hand bytes to, ``otel-audit show``) parses them with ``opentelemetry-proto``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from otel_audit import diagnostics, schema

# wire tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32)
_TIME = b"\x09"  # LogRecord.time_unix_nano, fixed64
_SEVERITY_NUMBER = b"\x10"
_SEVERITY_TEXT = b"\x1a"
_BODY = b"\x2a"
_ATTRIBUTE = b"\x32"
_DROPPED = b"\x38"
_FLAGS = b"\x45"  # fixed32
_TRACE_ID = b"\x4a"
_SPAN_ID = b"\x52"
_OBSERVED_TIME = b"\x59"  # fixed64
_EVENT_NAME = b"\x62"
_KEY = b"\x0a"  # KeyValue.key
_VALUE = b"\x12"  # KeyValue.value
_ARRAY_ITEM = b"\x0a"  # ArrayValue.values, KeyValueList.values
_SCOPE_LOGS = b"\x12"  # ResourceLogs.scope_logs
_LOG_RECORD = b"\x12"  # ScopeLogs.log_records

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack

# one-byte varints, the common case, made once
_SMALL = [bytes([n]) for n in range(0x80)]

CACHE_LIMIT = 4096  # (key, value) pairs kept; the cache starts over when full
# unique to each record: caching them would only churn the cache
UNCACHED = frozenset({schema.AUDIT_RECORD_ID, schema.AUDIT_SEQ, schema.AUDIT_CHAIN_HASH,
                      schema.AUDIT_CHECKPOINT_SIGNATURE})
BLOCKS_KEPT = 2048  # encoded record heads kept (about 1 KiB each); the cache starts over when full
FORMATTED_BODY = object()  # LogRecordEncoder.log_record(body=FORMATTED_BODY): schema.format_body of the attributes
_BLOCKABLE = frozenset({str, int})


def varint(n: int) -> bytes:
    """An unsigned varint (a negative int64 as its 64-bit two's complement, as protobuf writes it)."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 < n < 0x4000:  # a sequence number, a line, a length: two bytes
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0:
        n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    length = len(payload)
    return tag + (_SMALL[length] if length < 0x80 else varint(length)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue``'s bytes, for every value type the SDK's encoder accepts (its choices, in its order)."""
    if type(value) is str:  # the common case first (a str is never a bool)
        return _delimited(b"\x0a", value.encode("utf-8"))
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join(_delimited(_ARRAY_ITEM, any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join(_delimited(_ARRAY_ITEM, key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue``'s bytes (an empty key is omitted, as proto3 omits default values)."""
    return (_delimited(_KEY, key.encode("utf-8")) if key else b"") + _delimited(_VALUE, any_value(value))


class LogRecordEncoder:
    """Serialized OTLP ``ResourceLogs`` holding one log record: the spool's record format.

    ``ResourceLogs`` is ``resource | scope_logs | schema_url`` and ``ScopeLogs`` is
    ``scope | log_record | schema_url``; only the log record is new each time.  The resource and
    scope parts are rebuilt whenever the resource object changes (a forked child gets a new
    ``service.instance.id``).
    """

    FORMATTED_BODY = FORMATTED_BODY

    def __init__(self):
        self._key: tuple | None = None
        self._parts = (b"", b"", b"", b"")
        self._pairs: dict[tuple[str, Any], tuple[type, bytes]] = {}  # (key, value) -> (type, the whole field)
        self._keys: dict[str, bytes] = {}  # key -> its KeyValue.key field
        self._blocks: dict[tuple, bytes] = {}  # (severity, its text, body, the attributes but the last) -> fields
        self._events: dict[str, bytes] = {}  # event name -> its field

    def _rebuild(self, resource, scope) -> None:
        # the SDK's encoder and protobuf: at the first record, not at start
        from opentelemetry.exporter.otlp.proto.common._internal import _encode_instrumentation_scope, _encode_resource
        from opentelemetry.proto.logs.v1 import logs_pb2

        resource_head = logs_pb2.ResourceLogs(resource=_encode_resource(resource)).SerializeToString()
        resource_tail = logs_pb2.ResourceLogs(schema_url=resource.schema_url or None).SerializeToString()
        scope_head = logs_pb2.ScopeLogs(scope=_encode_instrumentation_scope(scope)).SerializeToString()
        scope_tail = logs_pb2.ScopeLogs(schema_url=(scope.schema_url if scope else None) or None).SerializeToString()
        self._parts = (resource_head, resource_tail, scope_head, scope_tail)
        self._key = (resource, scope)

    def attributes(self, attributes: Mapping[str, Any]) -> bytes:
        """The ``LogRecord.attributes`` fields, in the mapping's order (as the SDK encodes them)."""
        return self._items(tuple(attributes.items()))

    def _items(self, items) -> bytes:
        """``(key, value)`` pairs' fields, each found in the pair cache or encoded (and kept)."""
        pairs = self._pairs
        out = []
        append = out.append
        try:
            for item in items:
                # (key, value) -> (the value's type, the attribute's whole field); the type is compared
                # because True == 1 == 1.0 would find each other's entries
                cached = pairs.get(item)
                if cached is not None and cached[0] is type(item[1]):
                    append(cached[1])
                else:
                    append(self._attribute(*item))
        except TypeError:  # an unhashable value (a list): these attributes one by one
            return b"".join(self._attribute(key, value) for key, value in items)
        return b"".join(out)

    def _attribute(self, key: str, value: Any) -> bytes:
        """One attribute's field, kept for next time when its value is a string or an integer that repeats."""
        try:
            kind = type(value)
            encoded_key = self._keys.get(key)
            if encoded_key is None:
                encoded_key = self._keys[key] = _delimited(_KEY, key.encode("utf-8")) if key else b""
            if kind is int and 0 <= value < (1 << 63):  # seq, pid, line, size: at most 11 bytes of value
                inner = b"\x18" + (_SMALL[value] if value < 0x80 else varint(value))
                pair = encoded_key + _VALUE + _SMALL[len(inner)] + inner
            else:
                pair = encoded_key + _delimited(_VALUE, any_value(value))
            length = len(pair)
            field = _ATTRIBUTE + (_SMALL[length] if length < 0x80 else varint(length)) + pair
        except Exception as exc:  # as the SDK's encoder does: the attribute is left out, the record goes on
            diagnostics.report_internal_error(f"encoding the attribute {diagnostics.shorten(str(key))}", exc)
            return b""
        if (kind is str or kind is int) and key not in UNCACHED:
            pairs = self._pairs
            if len(pairs) >= CACHE_LIMIT:
                pairs.clear()
            pairs[(key, value)] = (kind, field)
        return field

    def log_record(self, *, timestamp: int | None, observed_timestamp: int, severity_number: int, severity_text: str | None,
                   body: Any, attributes: Mapping[str, Any], event_name: str | None, trace_id: int = 0, span_id: int = 0,
                   trace_flags: int = 0, dropped_attributes: int = 0, block_key: tuple | None = None) -> bytes:
        """A ``LogRecord``'s bytes: its fields in field-number order, defaults omitted (proto3).

        ``block_key``: the caller's own key of the repeating stretch (below), the attributes' items up to the
        per-record ones, which it vouches determine severity, text and body too (the recorder's are derived
        from them): then it is not worked out again.

        ``body`` may be :data:`FORMATTED_BODY`: the schema's one-line body of these attributes
        (:func:`otel_audit.schema.format_body`), then worked out only when not kept already.

        From one access of a file at a line of code to the next, everything from the severity to the
        attributes but the last, per-record ones (``audit.seq``, ``audit.record.id``) is the same:
        that stretch is kept encoded as one block, found with one lookup, when the attribute values
        are plain strings and integers (so that equal values are of one type: ``True == 1`` must
        not find another's block) and the body is a string or formatted from them.
        """
        items = tuple(attributes.items())
        if block_key is not None:  # (a tuple of pairs: never equal to the 4-tuples keyed below)
            head, key = block_key, block_key
        else:
            cut = len(items)
            while cut and items[cut - 1][0] in UNCACHED:
                cut -= 1
            head = items[:cut] if cut < len(items) else items
            key = None
            if (type(body) is str or body is FORMATTED_BODY) and _BLOCKABLE.issuperset(map(type, attributes.values())):
                key = (severity_number, severity_text, None if body is FORMATTED_BODY else body, head)
        block = None if key is None else self._blocks.get(key)
        if block is None:
            block = self._head(severity_number, severity_text, body, attributes, head)
            if key is not None:
                if len(self._blocks) >= BLOCKS_KEPT:
                    self._blocks.clear()
                self._blocks[key] = block
        cut = len(head)
        return self._record(timestamp, block, items, cut, observed_timestamp, trace_id, span_id, trace_flags,
                            dropped_attributes, event_name)

    def _record(self, timestamp, block: bytes, items: tuple, cut: int, observed_timestamp, trace_id, span_id, trace_flags,
                dropped_attributes, event_name) -> bytes:
        """The record from its repeating stretch and the rest."""
        parts = [_TIME + _fixed64(timestamp), block] if timestamp else [block]
        keys = self._keys
        for key, value in items[cut:]:  # audit.seq, audit.record.id: new in each record, written here directly
            encoded_key = keys.get(key)
            kind = type(value)
            if encoded_key is None or not (kind is int and 0 <= value < (1 << 63) or kind is str and value.isascii()):
                parts.append(self._attribute(key, value))
                continue
            if kind is int:
                value = b"\x18" + (_SMALL[value] if value < 0x80 else varint(value))
            else:
                value = b"\x0a" + _SMALL[len(value)] + value.encode() if len(value) < 0x80 else any_value(value)
            length = len(value)
            pair = encoded_key + _VALUE + (_SMALL[length] if length < 0x80 else varint(length)) + value
            length = len(pair)
            parts.append(_ATTRIBUTE + (_SMALL[length] if length < 0x80 else varint(length)) + pair)
        if dropped_attributes:
            parts.append(_DROPPED + varint(dropped_attributes))
        if trace_flags:
            parts.append(_FLAGS + _fixed32(trace_flags))
        if trace_id:
            parts.append(_delimited(_TRACE_ID, trace_id.to_bytes(16, "big")))
        if span_id:
            parts.append(_delimited(_SPAN_ID, span_id.to_bytes(8, "big")))
        if observed_timestamp:
            parts.append(_OBSERVED_TIME + _fixed64(observed_timestamp))
        if event_name:
            event = self._events.get(event_name)
            if event is None:
                event = self._events[event_name] = _delimited(_EVENT_NAME, event_name.encode("utf-8"))
            parts.append(event)
        return b"".join(parts)

    def _head(self, severity_number: int, severity_text: str | None, body: Any, attributes: Mapping[str, Any],
              head: tuple) -> bytes:
        """Severity, severity text, body and the ``head`` attributes: the fields between the two timestamps'
        neighbours that repeat from record to record."""
        parts = [_SEVERITY_NUMBER + varint(severity_number)] if severity_number else []
        if severity_text:
            parts.append(_delimited(_SEVERITY_TEXT, severity_text.encode("utf-8")))
        parts.append(_delimited(_BODY, any_value(schema.format_body(attributes) if body is FORMATTED_BODY else body)))
        parts.append(self._items(head))
        return b"".join(parts)

    def resource_logs(self, resource, scope, log_record: bytes) -> bytes:
        """``log_record`` (from :meth:`log_record`) in a self-contained ``ResourceLogs``."""
        key = self._key
        if key is None or key[0] is not resource or key[1] is not scope:
            self._rebuild(resource, scope)
        resource_head, resource_tail, scope_head, scope_tail = self._parts
        length = len(log_record)
        record_length = _SMALL[length] if length < 0x80 else varint(length)
        scope_length = len(scope_head) + 1 + len(record_length) + length + len(scope_tail)
        return b"".join((resource_head, _SCOPE_LOGS, _SMALL[scope_length] if scope_length < 0x80 else varint(scope_length),
                         scope_head, _LOG_RECORD, record_length, log_record, scope_tail, resource_tail))

    def encode(self, record) -> bytes:
        """An SDK ``ReadableLogRecord``, encoded this way (what :func:`shipper.encode_record` makes with the SDK)."""
        log = record.log_record
        severity = getattr(log.severity_number, "value", None) or 0
        return self.resource_logs(record.resource, record.instrumentation_scope, self.log_record(
            timestamp=log.timestamp, observed_timestamp=log.observed_timestamp, severity_number=severity,
            severity_text=log.severity_text, body=log.body, attributes=log.attributes or {},
            event_name=log.event_name, trace_id=log.trace_id or 0, span_id=log.span_id or 0,
            trace_flags=int(log.trace_flags or 0), dropped_attributes=record.dropped_attributes))


# -- spooled records to one export request ---------------------------------------------------------

class NotOtlp(ValueError):
    """A spooled payload that is not a serialized ``ResourceLogs``."""


def _fields(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The top-level fields of a serialized message: (field number, the whole field, its payload for a
    length-delimited one).  Raises :class:`NotOtlp` where the bytes are not a well-formed message."""
    fields, position, end = [], 0, len(data)
    while position < end:
        start = position
        tag = data[position]
        if tag < 0x80:  # (one-byte tags and lengths, the common case, read inline)
            position += 1
        else:
            tag, position = _read_varint(data, position)
        number, wire = tag >> 3, tag & 7
        if wire == 2:
            length = data[position] if position < end else 0x80
            if length < 0x80:
                position += 1
            elif position + 1 < end and data[position + 1] < 0x80:  # two bytes: a record's length
                length = length & 0x7F | data[position + 1] << 7
                position += 2
            else:
                length, position = _read_varint(data, position)
            payload_start, position = position, position + length
            if position > end:
                raise NotOtlp("a field runs past the end")
            fields.append((number, data[start:position], data[payload_start:position]))
            continue
        if wire == 0:
            _, position = _read_varint(data, position)
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise NotOtlp(f"wire type {wire}")
        if position > end or number == 0:
            raise NotOtlp("a field runs past the end" if number else "field number 0")
        fields.append((number, data[start:position], b""))
    return fields


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise NotOtlp("a varint runs past the end")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


# a ResourceLogs taken apart: (resource field, its schema_url field, [(scope field, scope schema_url field,
# [log record fields])])
Parts = tuple[bytes, bytes, list[tuple[bytes, bytes, list[bytes]]]]


def _split(message: bytes, whole_items: bool) -> tuple[bytes, list[bytes], bytes]:
    """``ResourceLogs`` and ``ScopeLogs`` have one shape: field 1 the resource or scope, 2 the repeated
    items (scope logs, log records), 3 the schema URL.  The items as whole fields, or their payloads."""
    head = schema = b""
    items = []
    for number, field, inner in _fields(message):
        if number == 1:
            head = field
        elif number == 3:
            schema = field
        elif number == 2:
            items.append(field if whole_items else inner)
    return head, items, schema


def resource_logs_parts(payload: bytes) -> Parts:
    """A serialized ``ResourceLogs`` taken apart.  Raises :class:`NotOtlp` if it is not one."""
    resource, scope_logs, resource_schema = _split(payload, whole_items=False)
    scopes = []
    for one in scope_logs:
        scope, records, scope_schema = _split(one, whole_items=True)
        scopes.append((scope, scope_schema, records))
    return resource, resource_schema, scopes


def export_request(batch: Sequence[Parts]) -> bytes:
    """A serialized ``ExportLogsServiceRequest`` of spooled records (each from :func:`resource_logs_parts`),
    grouped as the SDK's encoder groups a batch: one ``ResourceLogs`` per resource, one ``ScopeLogs`` per
    scope in it, the log records in their order."""
    resources: dict[tuple[bytes, bytes], dict[tuple[bytes, bytes], list[bytes]]] = {}
    for resource, resource_schema, scopes in batch:
        groups = resources.setdefault((resource, resource_schema), {})
        for scope, scope_schema, records in scopes:
            groups.setdefault((scope, scope_schema), []).extend(records)
    out = []
    for (resource, resource_schema), groups in resources.items():
        scope_logs = b"".join(_delimited(_SCOPE_LOGS, scope + b"".join(records) + scope_schema)
                              for (scope, scope_schema), records in groups.items())
        out.append(_delimited(b"\x0a", resource + scope_logs + resource_schema))
    return b"".join(out)
