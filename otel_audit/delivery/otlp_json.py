"""OTLP/JSON of spooled records: the line the ``audit_file`` sink writes for an export request.

The spool holds serialized OTLP protobuf; the sink writes OpenTelemetry's OTLP/JSON lines
(``opentelemetry-exporter-otlp-json-common``'s encoding, one ``ExportLogsServiceRequest`` per line,
what the stock ``FileLogExporter`` writes and the collector's ``otlpjsonfile`` receiver reads).
Two ways lead to the same line:

* :func:`request_json`, the reference: the request parsed with ``opentelemetry-proto`` and walked
  field by field into the dict that encoder makes (its keys in its order, 64-bit integers as strings,
  ids in hex, bytes in base64, enums as numbers).  Any OTLP.
* :func:`request_line`, the sink's: the records' wire format read directly, each attribute's JSON
  text kept by the attribute's bytes (from one record to the next nearly all of them repeat: the
  user, the API, the path, the call site), the per-record ones (``audit.seq``, ``audit.record.id``)
  and the timestamps written directly.  Whatever it does not expect (a field it does not know, one
  given twice, a value type other than a string or an integer where it reads them directly, bytes
  that are not well formed) goes to the reference, so the line is always the reference's line
  (``tests/test_durable.py`` compares them on every value type).  About six times cheaper.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

from otel_audit import schema

# json.dumps(value, separators=(",", ":")), the stock line's encoding, for a part of the line
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_fixed64 = struct.Struct("<Q").unpack_from
_fixed32 = struct.Struct("<I").unpack_from

CACHE_LIMIT = 4096  # JSON texts kept per kind; a cache starts over when full


def request_json(request: bytes) -> dict | None:
    """A serialized ``ExportLogsServiceRequest`` as the dict OpenTelemetry's OTLP/JSON encoder makes of the
    same records.  ``None`` for a request without records, as that encoder gives."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    parsed = ExportLogsServiceRequest.FromString(request)
    return _json(parsed, "LogsData") if parsed.resource_logs else None


def request_line(request: bytes) -> str | None:
    """The line (newline included) the stock OTLP/JSON file exporter writes for the records of ``request``:
    ``json.dumps(request_json(request), separators=(",", ":")) + "\\n"``; ``None`` for a request without
    records.  Raises what :func:`request_json` raises for bytes that are not a request."""
    try:
        return _writer.line(request)
    except (_Unexpected, IndexError, UnicodeDecodeError, struct.error):
        pass
    parsed = request_json(request)
    return None if parsed is None else _dumps(parsed) + "\n"


# -- the reference ---------------------------------------------------------------------------------

def _json_double(number: float) -> float | str:
    if math.isnan(number):
        return "NaN"
    return ("Infinity" if number > 0 else "-Infinity") if math.isinf(number) else number


# Per message: (protobuf field, OTLP/JSON key, how the value is written), in the encoder's key order.
# A field is written when set (a message field), non-empty (a repeated one) or not its default (a
# scalar).  How: None as it is; a function of the value; a message name (``[...]``: each of a list).
_JSON_FIELDS: dict[str, tuple[tuple[str, str, Any], ...]] = {
    "LogsData": (("resource_logs", "resourceLogs", ["ResourceLogs"]),),
    "ResourceLogs": (("resource", "resource", "Resource"), ("scope_logs", "scopeLogs", ["ScopeLogs"]),
                     ("schema_url", "schemaUrl", None)),
    "Resource": (("attributes", "attributes", ["KeyValue"]), ("dropped_attributes_count", "droppedAttributesCount", None)),
    "ScopeLogs": (("scope", "scope", "InstrumentationScope"), ("log_records", "logRecords", ["LogRecord"]),
                  ("schema_url", "schemaUrl", None)),
    "InstrumentationScope": (("name", "name", None), ("version", "version", None), ("attributes", "attributes", ["KeyValue"]),
                             ("dropped_attributes_count", "droppedAttributesCount", None)),
    "LogRecord": (("time_unix_nano", "timeUnixNano", str), ("observed_time_unix_nano", "observedTimeUnixNano", str),
                  ("severity_number", "severityNumber", int), ("severity_text", "severityText", None),
                  ("body", "body", "AnyValue"), ("attributes", "attributes", ["KeyValue"]),
                  ("dropped_attributes_count", "droppedAttributesCount", None), ("flags", "flags", None),
                  ("trace_id", "traceId", bytes.hex), ("span_id", "spanId", bytes.hex), ("event_name", "eventName", None)),
    "KeyValue": (("key", "key", None), ("value", "value", "AnyValue")),
    "ArrayValue": (("values", "values", ["AnyValue"]),),
    "KeyValueList": (("values", "values", ["KeyValue"]),),
}
# AnyValue is a oneof: exactly the member that is set (an empty string or a zero included)
_ANY_VALUE = {"string_value": ("stringValue", None), "bool_value": ("boolValue", None),
              "int_value": ("intValue", str), "double_value": ("doubleValue", _json_double),
              "array_value": ("arrayValue", "ArrayValue"), "kvlist_value": ("kvlistValue", "KeyValueList"),
              "bytes_value": ("bytesValue", lambda value: base64.b64encode(value).decode("ascii"))}


def _json(message, kind: str) -> dict:
    if kind == "AnyValue":
        member = message.WhichOneof("value")
        if member is None:
            return {}
        key, how = _ANY_VALUE[member]
        return {key: _json_value(getattr(message, member), how)}
    out: dict[str, Any] = {}
    for field, key, how in _JSON_FIELDS[kind]:
        if isinstance(how, str):  # a message field: written when set, even if empty
            if message.HasField(field):
                out[key] = _json(getattr(message, field), how)
            continue
        value = getattr(message, field)
        if value:
            out[key] = _json_value(value, how)
    return out


def _json_value(value: Any, how: Any) -> Any:
    if how is None:
        return value
    if isinstance(how, list):
        return [_json(item, how[0]) for item in value]
    if isinstance(how, str):
        return _json(value, how)
    return how(value)


def _reference_text(kind: str, payload: bytes) -> str:
    """The JSON text of one message of ``kind`` (its serialized ``payload``), by the reference."""
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    cls = resource_pb2.Resource if kind == "Resource" else getattr(common_pb2, kind)
    return _dumps(_json(cls.FromString(payload), kind))


# -- the fast path -----------------------------------------------------------------------------------

class _Unexpected(Exception):
    """Not the shape the fast path reads: the reference decides."""


def _length(data: bytes, position: int) -> tuple[int, int]:
    """A length-delimited field's (start, end) from the position of its length varint."""
    length = data[position]
    if length < 0x80:
        start = position + 1
    else:
        length, start = _varint(data, position)
    end = start + length
    if end > len(data):
        raise _Unexpected("a field runs past the end")
    return start, end


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]  # (IndexError past the end)
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise _Unexpected("a varint longer than ten bytes")


def _delimited_fields(data: bytes, singular: frozenset) -> list[tuple[int, bytes]]:
    """(field number, payload) of a message whose fields are all length-delimited (a request, resource or
    scope logs), each number of ``singular`` at most once."""
    fields, seen, position, end = [], set(), 0, len(data)
    while position < end:
        tag = data[position]
        number = tag >> 3
        if tag & 7 != 2 or tag >= 0x80 or not number:
            raise _Unexpected(f"tag {tag}")
        if number in singular:
            if number in seen:
                raise _Unexpected(f"field {number} twice")
            seen.add(number)
        start, position = _length(data, position + 1)
        fields.append((number, data[start:position]))
    return fields


_ONE_EACH = frozenset({1, 3})  # ResourceLogs' resource and ScopeLogs' scope, and their schema_url
_NONE_SINGULAR = frozenset()
_ATTRIBUTE = 0x32
_FIXED64 = {0x09: 1, 0x59: 11}  # time_unix_nano, observed_time_unix_nano
_VARINTS = {0x10: 2, 0x38: 7}  # severity_number (an int32 enum), dropped_attributes_count (uint32)
_DELIMITED = {0x1a: 3, 0x2a: 5, 0x4a: 9, 0x52: 10, 0x62: 12}  # severity_text, body, trace_id, span_id, event_name
_FLAGS = 0x45  # fixed32
def _quoted(value) -> str:
    return f'"{value}"'


def _text(value: bytes) -> str:
    return _dumps(value.decode("utf-8"))


def _hex(value: bytes) -> str:
    return f'"{value.hex()}"'


# LogRecord's fields in the stock encoder's key order: (field number, OTLP/JSON key, how its value is written;
# 5 the body and 6 the attributes are written by _log_record itself)
_LOG_RECORD_JSON = ((1, "timeUnixNano", _quoted), (11, "observedTimeUnixNano", _quoted), (2, "severityNumber", str),
                    (3, "severityText", _text), (5, "body", None), (6, "attributes", None),
                    (7, "droppedAttributesCount", str), (8, "flags", str), (9, "traceId", _hex), (10, "spanId", _hex),
                    (12, "eventName", _text))
_UNIQUE_KEYS = frozenset(key.encode() for key in (  # new in every record: not worth keeping
    schema.AUDIT_SEQ, schema.AUDIT_RECORD_ID, schema.AUDIT_CHAIN_HASH, schema.AUDIT_CHECKPOINT_SIGNATURE))


class _LineWriter:
    def __init__(self):
        self._attributes: dict[bytes, str] = {}  # KeyValue bytes -> its JSON text
        self._keys: dict[bytes, str] = {}  # a key's bytes -> '{"key":"...","value":'
        self._bodies: dict[bytes, str] = {}  # AnyValue bytes -> its JSON text
        self._heads: dict[tuple[str, bytes], str] = {}  # ("Resource" or "InstrumentationScope", bytes) -> JSON text

    def line(self, request: bytes) -> str | None:
        resource_logs = []
        for number, payload in _delimited_fields(request, _NONE_SINGULAR):
            if number != 1:  # ExportLogsServiceRequest has only its resource_logs
                raise _Unexpected(f"field {number}")
            resource_logs.append(self._resource_logs(payload))
        if not resource_logs:
            return None
        return '{"resourceLogs":[' + ",".join(resource_logs) + "]}\n"

    def _head(self, kind: str, payload: bytes) -> str:
        key = (kind, payload)
        text = self._heads.get(key)
        if text is None:
            if len(self._heads) >= CACHE_LIMIT:
                self._heads.clear()
            text = self._heads[key] = _reference_text(kind, payload)
        return text

    def _resource_logs(self, data: bytes) -> str:
        return self._container(data, "resource", "Resource", "scopeLogs", self._scope_logs)

    def _scope_logs(self, data: bytes) -> str:
        return self._container(data, "scope", "InstrumentationScope", "logRecords", self._log_record)

    def _container(self, data: bytes, head_key: str, head_kind: str, items_key: str, item) -> str:
        """``ResourceLogs`` and ``ScopeLogs`` have one shape: 1 the resource or scope, 2 the repeated items
        (scope logs, log records), 3 the schema URL."""
        head = schema_url = None
        items = []
        for number, payload in _delimited_fields(data, _ONE_EACH):
            if number == 2:
                items.append(item(payload))
            elif number == 1:
                head = payload
            elif number == 3:
                schema_url = payload.decode("utf-8")
            else:
                raise _Unexpected(f"field {number}")
        parts = []
        if head is not None:
            parts.append(f'"{head_key}":' + self._head(head_kind, head))
        if items:
            parts.append(f'"{items_key}":[' + ",".join(items) + "]")
        if schema_url:
            parts.append('"schemaUrl":' + _dumps(schema_url))
        return "{" + ",".join(parts) + "}"

    def _log_record(self, data: bytes) -> str:
        values: dict[int, Any] = {}  # field number -> value (scalars) or payload (length-delimited)
        attributes = []
        cached = self._attributes
        position, end = 0, len(data)
        while position < end:
            tag = data[position]
            if tag == _ATTRIBUTE:
                length = data[position + 1]
                if length < 0x80:  # (one past the end is caught after the loop: nothing is written before)
                    start = position + 2
                    position = start + length
                else:
                    start, position = _length(data, position + 1)
                pair = data[start:position]
                text = cached.get(pair)
                attributes.append(text if text is not None else self._key_value(pair))
                continue
            number = _FIXED64.get(tag)
            if number is not None:
                value = _fixed64(data, position + 1)[0]
                position += 9
            elif tag in _DELIMITED:
                number = _DELIMITED[tag]
                start, position = _length(data, position + 1)
                value = data[start:position]
            elif tag in _VARINTS:
                number = _VARINTS[tag]
                value, position = _varint(data, position + 1)
                if value >= 1 << 31:  # a negative enum, a count beyond 32 bits: the reference's truncation
                    raise _Unexpected("a varint beyond 31 bits")
            elif tag == _FLAGS:
                number, value = 8, _fixed32(data, position + 1)[0]
                position += 5
            else:
                raise _Unexpected(f"tag {tag}")
            if number in values:
                raise _Unexpected(f"field {number} twice")
            values[number] = value
        if position != end:
            raise _Unexpected("a field runs past the end")
        parts = []
        for number, key, write in _LOG_RECORD_JSON:
            if number == 6:
                if attributes:
                    parts.append('"attributes":[' + ",".join(attributes) + "]")
            elif number == 5:  # a message field: written when present, even empty
                if 5 in values:
                    parts.append('"body":' + self._any_value(values[5]))
            else:
                value = values.get(number)
                if value:  # a scalar: written when not its default
                    parts.append(f'"{key}":' + write(value))
        return "{" + ",".join(parts) + "}"

    def _any_value(self, payload: bytes) -> str:
        text = self._bodies.get(payload)
        if text is None:
            if payload[:1] == b"\x0a":  # a string, the schema's body
                start, end = _length(payload, 1)
                if end != len(payload):
                    return _reference_text("AnyValue", payload)
                text = '{"stringValue":' + _dumps(payload[start:end].decode("utf-8")) + "}"
            else:
                text = _reference_text("AnyValue", payload)
            if len(self._bodies) >= CACHE_LIMIT:
                self._bodies.clear()
            self._bodies[payload] = text
        return text

    def _key_value(self, pair: bytes) -> str:
        """A ``KeyValue``'s JSON text (not kept yet): a string or integer value read directly, others by the
        reference."""
        text = None
        if pair[0] == 0x0a:
            start, key_end = _length(pair, 1)
            if key_end > start and pair[key_end] == 0x12:
                value_start, value_end = _length(pair, key_end + 1)
                if value_end == len(pair) and value_end > value_start:
                    value = self._value(pair, value_start, value_end)
                    if value is not None:
                        key = pair[start:key_end]
                        head = self._keys.get(key)
                        if head is None:
                            if len(self._keys) >= CACHE_LIMIT:
                                self._keys.clear()
                            head = self._keys[key] = '{"key":' + _dumps(key.decode("utf-8")) + ',"value":'
                        text = head + value + "}"
                        if key in _UNIQUE_KEYS:
                            return text
        if text is None:
            text = _reference_text("KeyValue", pair)
        cached = self._attributes
        if len(cached) >= CACHE_LIMIT:
            cached.clear()
        cached[pair] = text
        return text

    @staticmethod
    def _value(data: bytes, start: int, end: int) -> str | None:
        """An ``AnyValue`` holding a string or an integer, as JSON text; ``None`` for any other."""
        tag = data[start]
        if tag == 0x0a:
            text_start, text_end = _length(data, start + 1)
            if text_end == end:
                return '{"stringValue":' + _dumps(data[text_start:text_end].decode("utf-8")) + "}"
        elif tag == 0x18:
            value, position = _varint(data, start + 1)
            if position == end:
                return f'{{"intValue":"{value - (1 << 64) if value >= 1 << 63 else value}"}}'
        return None


_writer = _LineWriter()
