"""The audit record, schema v1: the one place that says what otel-audit emits.

Every access becomes one OpenTelemetry log record:

* ``event_name`` is :data:`EVENT_NAME` (``audit.access``);
* severity is INFO on success and WARN on failure or denial;
* ``body`` is one readable line (:func:`format_body`), what Loki shows;
* ``attributes`` are the names below.  :data:`ATTRIBUTES` lists each with its
  type, whether it is always present, and what it means; the README's schema
  table is generated from the same list and a test keeps the two in step.

Hooks never spell an attribute name themselves: they import the constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

SCHEMA_VERSION = "1"
EVENT_NAME = "audit.access"
SCOPE_NAME = "otel_audit"

# Values of audit.action / audit.outcome / audit.resource.type.
ACTION_READ = "read"
ACTION_WRITE = "write"
ACTION_DELETE = "delete"
ACTION_LIST = "list"
ACTIONS = (ACTION_READ, ACTION_WRITE, ACTION_DELETE, ACTION_LIST)

OUTCOME_SUCCESS = "success"
OUTCOME_FAILURE = "failure"
OUTCOME_DENIED = "denied"
OUTCOMES = (OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_DENIED)

TYPE_DATA = "data"
TYPE_MODEL = "model"
RESOURCE_TYPES = (TYPE_DATA, TYPE_MODEL)

# Attribute names.  Where OpenTelemetry semantic conventions define a name
# (user.*, process.pid, code.*, file.*, aws.*, cloud.region, db.collection.name,
# error.type, enduser.id) we use it; audit.* is ours.
AUDIT_ACTION = "audit.action"
AUDIT_OUTCOME = "audit.outcome"
AUDIT_API = "audit.api"
AUDIT_RESOURCE_URI = "audit.resource.uri"
AUDIT_RESOURCE_TYPE = "audit.resource.type"
AUDIT_SEQ = "audit.seq"
AUDIT_RECORD_ID = "audit.record.id"
AUDIT_MODE = "audit.mode"
AUDIT_RESOURCE_FILES = "audit.resource.files"
AUDIT_RESOURCE_REVISION = "audit.resource.revision"
AUDIT_RESOURCE_VERSION = "audit.resource.version"
AUDIT_CACHE_LOCATION = "audit.cache.location"
USER_NAME = "user.name"
USER_ID = "user.id"
PROCESS_PID = "process.pid"
CODE_FILE_PATH = "code.file.path"
CODE_LINE_NUMBER = "code.line.number"
CODE_FUNCTION_NAME = "code.function.name"
FILE_PATH = "file.path"
FILE_SIZE = "file.size"
AWS_S3_BUCKET = "aws.s3.bucket"
AWS_S3_KEY = "aws.s3.key"
AWS_REQUEST_ID = "aws.request_id"
CLOUD_REGION = "cloud.region"
ERROR_TYPE = "error.type"
DB_COLLECTION_NAME = "db.collection.name"
ENDUSER_ID = "enduser.id"
AUDIT_POLICY_DECISION = "audit.policy.decision"
AUDIT_POLICY_RULE = "audit.policy.rule"

# Values of audit.policy.decision.
DECISION_ALLOW = "allow"
DECISION_DENY = "deny"
DECISION_WOULD_DENY = "would_deny"  # a dry run: the policy denies it, nothing was refused
DECISION_NOT_ENFORCED = "not_enforced"  # no valid policy could be loaded and ON_FAILURE=open let it through
DECISIONS = (DECISION_ALLOW, DECISION_DENY, DECISION_WOULD_DENY, DECISION_NOT_ENFORCED)


class Attribute(NamedTuple):
    name: str
    type: str  # "string" | "int" | "string[]"
    always: bool  # present on every record
    meaning: str


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(AUDIT_ACTION, "string", True, "`read`, `write`, `delete` or `list`"),
    Attribute(AUDIT_OUTCOME, "string", True, "`success`, `failure` or `denied` (permission refused)"),
    Attribute(AUDIT_API, "string", True, "the audited call, e.g. `builtins.open`, `pandas.read_csv`, `s3.GetObject`"),
    Attribute(AUDIT_RESOURCE_URI, "string", True, "`file:///absolute/path` (percent-encoded), `s3://bucket/key`, or the URL given"),
    Attribute(AUDIT_RESOURCE_TYPE, "string", True, "`data` or `model` (by API, then by file extension)"),
    Attribute(AUDIT_SEQ, "int", True, "per-process counter from 1, no gaps; with `service.instance.id` it identifies the record"),
    Attribute(AUDIT_RECORD_ID, "string", True, "unique id of the record (a per-process random part and `audit.seq`): "
              "a record delivered twice after a crash or retry carries the same id"),
    Attribute(USER_NAME, "string", True, "OS login name of the process"),
    Attribute(USER_ID, "string", True, "OS user id (uid) of the process"),
    Attribute(PROCESS_PID, "int", True, "process id"),
    Attribute(CODE_FILE_PATH, "string", True, "user-code file that made the call"),
    Attribute(CODE_LINE_NUMBER, "int", True, "its line"),
    Attribute(CODE_FUNCTION_NAME, "string", True, "its function (`<module>` at top level)"),
    Attribute(FILE_PATH, "string", False, "absolute local path, for file resources"),
    Attribute(FILE_SIZE, "int", False, "size in bytes, on successful reads of local files"),
    Attribute(AUDIT_MODE, "string", False, "the `open` mode, for `builtins.open`"),
    Attribute(AUDIT_RESOURCE_FILES, "string[]", False, "the files a call read or wrote to load or save the resource "
              "(a model directory's config and weight shards), relative to it when inside it; at most 64, then "
              "one entry saying there were more"),
    Attribute(AUDIT_RESOURCE_REVISION, "string", False, "the revision asked for (Hugging Face hub: branch, tag or "
              "commit; `main` when none was given)"),
    Attribute(AUDIT_RESOURCE_VERSION, "string", False, "the exact version the call used, when known (Hugging Face "
              "hub: the commit of the snapshot it read)"),
    Attribute(AUDIT_CACHE_LOCATION, "string", False, "where the call cached what it read (the directory of "
              "`datasets.load_dataset`'s cache files)"),
    Attribute(AWS_S3_BUCKET, "string", False, "S3 bucket"),
    Attribute(AWS_S3_KEY, "string", False, "S3 key (or prefix, for `list`)"),
    Attribute(AWS_REQUEST_ID, "string", False, "S3 request id, when the service answered"),
    Attribute(CLOUD_REGION, "string", False, "the client's AWS region"),
    Attribute(DB_COLLECTION_NAME, "string", False, "the table a SQL call named (`pandas.read_sql_table`, `to_sql`); "
              "never the query"),
    Attribute(ERROR_TYPE, "string", False, "on failure: exception class (e.g. `FileNotFoundError`) or S3 error code (e.g. `NoSuchKey`)"),
    Attribute(ENDUSER_ID, "string", False, "application end user, from `otel_audit.enduser()` or baggage `enduser.id`"),
    Attribute(AUDIT_POLICY_DECISION, "string", False, "with `OTEL_PYTHON_AUDIT_POLICY` set: `allow`, `deny` "
              "(refused: outcome `denied`), `would_deny` (a dry run let it through) or `not_enforced` (no valid "
              "policy could be loaded)"),
    Attribute(AUDIT_POLICY_RULE, "string", False, "the `id` of the policy rule that decided, `default` when none "
              "matched, `otel-audit:policy-not-loaded` when no valid policy could be loaded"),
)

# -- audit of auditing: lifecycle records ----------------------------------------------------------
# otel-audit records what happens to auditing itself as log records of their own event name, with the
# same resource, scope and identity (user.*, process.pid, audit.seq, audit.record.id: one sequence with
# the accesses) as the accesses: when it starts, when a library could not be patched (its accesses are
# NOT audited), when the access policy is loaded, changes or cannot be loaded, and when it is stopped.
LIFECYCLE_EVENT_NAME = "audit.lifecycle"
AUDIT_LIFECYCLE_EVENT = "audit.lifecycle.event"
AUDIT_LIFECYCLE_DETAIL = "audit.lifecycle.detail"
AUDIT_VERSION = "audit.version"
AUDIT_HOOKS = "audit.hooks"
AUDIT_HOOK = "audit.hook"
AUDIT_DELIVERY = "audit.delivery"
AUDIT_POLICY_PATH = "audit.policy.path"
AUDIT_POLICY_SHA256 = "audit.policy.sha256"
AUDIT_POLICY_MODE = "audit.policy.mode"

LIFECYCLE_STARTED = "started"
LIFECYCLE_HOOK_FAILED = "hook_failed"
LIFECYCLE_POLICY_LOADED = "policy_loaded"
LIFECYCLE_POLICY_FAILED = "policy_failed"
LIFECYCLE_STOPPED = "stopped"
LIFECYCLE_EVENTS = (LIFECYCLE_STARTED, LIFECYCLE_HOOK_FAILED, LIFECYCLE_POLICY_LOADED, LIFECYCLE_POLICY_FAILED,
                    LIFECYCLE_STOPPED)

LIFECYCLE_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(AUDIT_LIFECYCLE_EVENT, "string", True, "`started` (instrumented), `hook_failed` (a library could "
              "not be patched: its accesses are NOT audited), `policy_loaded` (the policy file changed: the new one is in force), "
              "`policy_failed` (the policy file could not be loaded: see `audit.policy.decision` of the accesses), "
              "`stopped` (`uninstrument()`)"),
    Attribute(AUDIT_VERSION, "string", True, "the otel-audit version"),
    Attribute(AUDIT_LIFECYCLE_DETAIL, "string", False, "what went wrong (`hook_failed`, `policy_failed`)"),
    Attribute(AUDIT_HOOKS, "string[]", False, "`started`: the hooks configured (`OTEL_PYTHON_AUDIT_HOOKS`), each "
              "patching its library when the program imports it"),
    Attribute(AUDIT_DELIVERY, "string", False, "`started`: `durable` or `memory`"),
    Attribute(AUDIT_HOOK, "string", False, "`hook_failed`: the access point, and the module it could not patch"),
    Attribute(AUDIT_POLICY_PATH, "string", False, "the policy file, when one is configured"),
    Attribute(AUDIT_POLICY_SHA256, "string", False, "the sha256 of the policy in force (`started`, `policy_loaded`)"),
    Attribute(AUDIT_POLICY_MODE, "string", False, "`enforce` or `dry-run`, of the policy in force"),
)

# -- a trail that proves it is whole: the chain and its checkpoints ---------------------------------
# Every record of a stream (one process: its service.instance.id) carries audit.chain.hash, a hash over
# its own content (its canonical form, below) and the previous record's audit.chain.hash (audit.seq
# gives the order).  Checkpoint records (their own event name, in the same sequence) say how many
# records the stream holds so far and, when a signing key is configured, sign that with Ed25519; the
# last one of a process that ended is the stream's closing record.
CHECKPOINT_EVENT_NAME = "audit.checkpoint"
AUDIT_CHAIN_HASH = "audit.chain.hash"
AUDIT_CHAIN_ALGORITHM = "audit.chain.algorithm"
AUDIT_CHECKPOINT_FINAL = "audit.checkpoint.final"
AUDIT_CHECKPOINT_SIGNATURE = "audit.checkpoint.signature"
AUDIT_CHECKPOINT_KEY_ID = "audit.checkpoint.key_id"
CHAIN_SHA256 = "sha256"
CHAIN_HMAC_SHA256 = "hmac-sha256"
CANONICAL_VERSION = "otel-audit/1"
# what a record's canonical form leaves out: the chain's own proof of it
CHAIN_EXCLUDED = frozenset({AUDIT_CHAIN_HASH, AUDIT_CHECKPOINT_SIGNATURE})

CHAIN_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(AUDIT_CHAIN_HASH, "string", True, "on every record: hex SHA-256 (HMAC-SHA256 with "
              "`OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE`) of the previous record's `audit.chain.hash` and this record's "
              "canonical form ([Proving the trail is whole](#proving-the-trail-is-whole))"),
    Attribute(AUDIT_CHAIN_ALGORITHM, "string", True, "checkpoints: `sha256` or `hmac-sha256`"),
    Attribute(AUDIT_CHECKPOINT_FINAL, "bool", True, "checkpoints: `true` on the stream's closing record (the "
              "process stopped auditing: at exit or `uninstrument()`); its `audit.seq` is the stream's length"),
    Attribute(AUDIT_CHECKPOINT_SIGNATURE, "string", False, "checkpoints, with `OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE`: "
              "hex Ed25519 signature of the stream, `audit.seq` and `audit.chain.hash`"),
    Attribute(AUDIT_CHECKPOINT_KEY_ID, "string", False, "checkpoints, when signed: the first 16 hex digits of the "
              "SHA-256 of the raw public key"),
)


def canonical_value(value):
    """A value as the canonical form writes it: ``["s", text]``, ``["i", n]``, ``["b", flag]``, ``["d", x]``,
    ``["y", base64]``, ``["a", [...]]``, ``["m", [[key, value], ...]]`` sorted, or ``None`` (no value)."""
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["d", value]
    if isinstance(value, (bytes, bytearray)):
        import base64

        return ["y", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, Mapping):
        return ["m", canonical_items(value)]
    if isinstance(value, (list, tuple)):
        return ["a", [canonical_value(v) for v in value]]
    return None


def canonical_items(attributes: Mapping) -> list:
    """Attributes as ``[[key, canonical value], ...]``, sorted by their JSON text, the chain's own left out."""
    encode = _encoder()
    pairs = [[str(key), canonical_value(value)] for key, value in attributes.items() if key not in CHAIN_EXCLUDED]
    return [pair for _, pair in sorted(((encode(pair), pair) for pair in pairs), key=lambda each: each[0])]


def canonical_items_text(attributes: Mapping) -> str:
    """The JSON text of :func:`canonical_items` (each pair encoded once, then sorted)."""
    return "[" + ",".join(sorted(_pair_text(key, value) for key, value in attributes.items()
                                 if key not in CHAIN_EXCLUDED)) + "]"


def _pair_text(key, value) -> str:
    """``encode([str(key), canonical_value(value)])``, written directly for a string or an integer (nearly every
    attribute): what the JSON encoder writes for them (a string as ``encode_basestring``, an int as its repr)."""
    kind = type(value)
    if kind is str:
        return f'[{_string(str(key))},["s",{_string(value)}]]'
    if kind is int:
        return f'[{_string(str(key))},["i",{value!r}]]'
    return _encoder()([str(key), canonical_value(value)])


_encode = None


def _encoder():
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, made once (and not at start-up)."""
    global _encode, _string
    if _encode is None:
        import json

        _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        _string = json.encoder.encode_basestring  # a str as that encoder writes it (ensure_ascii off)
    return _encode


def _string(text: str) -> str:  # (replaced by json's own at the first use)
    _encoder()
    return _string(text)


# per record, in the canonical form's tail (the rest, its head, repeats from record to record)
CANONICAL_TAIL_ATTRIBUTES = (AUDIT_SEQ, AUDIT_RECORD_ID)


def canonical_record(*, resource: Mapping, scope_name: str, scope_version: str, time_unix_nano: int,
                     observed_time_unix_nano: int, severity_number: int, severity_text: str, body,
                     event_name: str, trace_id: str, span_id: str, flags: int, attributes: Mapping) -> bytes:
    """The bytes a record's chain hash covers: what the record says, however it was serialized.

    The same from the record as the program made it and from the record read back from OTLP protobuf or
    OTLP/JSON, re-encoded by a collector or not (attribute order, spacing, integers as strings, absent
    fields and their defaults are all alike).  UTF-8 (``ensure_ascii`` off, no spaces) of the JSON array::

        [CANONICAL_VERSION, resource attributes, scope name, scope version, severity number, severity text,
         body, event name, attributes, time, observed time, trace id, span id, flags, audit.seq, audit.record.id]

    Attributes are ``[key, [type, value]]`` (:func:`canonical_value`) sorted by their JSON text, without the
    chain's own (``audit.chain.hash``, the checkpoint signature) and without ``audit.seq`` and
    ``audit.record.id``, which come last as values (``null`` when absent); trace and span id are lower-case
    hex, empty when none.  What changes from one record to the next is at the end, so the record path
    hashes what repeats once (``otel_audit.chain``).
    """
    encode = _encoder()  # (the array's text, element by element: what json.dumps of the whole list writes)
    parts = [encode(CANONICAL_VERSION), canonical_items_text(resource), encode(scope_name or ""),
             encode(scope_version or ""), str(int(severity_number or 0)), encode(severity_text or ""),
             encode(canonical_value(body)), encode(event_name or ""),
             canonical_items_text({k: v for k, v in attributes.items() if k not in CANONICAL_TAIL_ATTRIBUTES}),
             str(int(time_unix_nano or 0)), str(int(observed_time_unix_nano or 0)), encode(trace_id or ""),
             encode(span_id or ""), str(int(flags or 0)), encode(canonical_value(attributes.get(AUDIT_SEQ))),
             encode(canonical_value(attributes.get(AUDIT_RECORD_ID)))]
    return ("[" + ",".join(parts) + "]").encode("utf-8")


REQUIRED_ATTRIBUTES = frozenset(a.name for a in ATTRIBUTES if a.always)
# every name otel-audit emits, on accesses and lifecycle records (user.*, process.pid, audit.seq and
# audit.record.id are on both)
ALL_ATTRIBUTES = frozenset(a.name for a in ATTRIBUTES + LIFECYCLE_ATTRIBUTES + CHAIN_ATTRIBUTES)


def escape_unprintable(text: str) -> str:
    """``text`` with every character that is not printable escaped: controls (``\\x1b``), bidi and other
    format characters (``\\u202e``), line and paragraph separators.  How record bodies, attribute values
    that go into them, ``otel-audit show`` and otel-audit's own diagnostics write outside text."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def principal_text(user: str, enduser: str | None) -> str:
    """Who made an access, as records and readers say it: ``svc`` or ``svc (for alice)``."""
    return user if enduser is None else f"{user} (for {enduser})"


def lifecycle_body(attributes: dict) -> str:
    """A lifecycle record's one-line body: ``otel-audit started (0.1.0): 18 hooks, durable delivery``."""
    event = attributes[AUDIT_LIFECYCLE_EVENT]
    parts = [f"otel-audit {event} ({attributes[AUDIT_VERSION]})"]
    if AUDIT_HOOKS in attributes:
        parts.append(f"{len(attributes[AUDIT_HOOKS])} hooks, {attributes.get(AUDIT_DELIVERY)} delivery")
    if AUDIT_HOOK in attributes:
        parts.append(f"{attributes[AUDIT_HOOK]} NOT audited")
    if AUDIT_POLICY_SHA256 in attributes:
        parts.append(f"policy {attributes.get(AUDIT_POLICY_PATH)} {attributes.get(AUDIT_POLICY_MODE)} "
                     f"sha256 {attributes[AUDIT_POLICY_SHA256][:16]}")
    elif AUDIT_POLICY_PATH in attributes:
        parts.append(f"policy {attributes[AUDIT_POLICY_PATH]} NOT in force")
    if AUDIT_LIFECYCLE_DETAIL in attributes:
        parts.append(str(attributes[AUDIT_LIFECYCLE_DETAIL]))
    return escape_unprintable(": ".join(parts[:2]) + "".join(f"; {p}" for p in parts[2:]))


def checkpoint_body(attributes: dict) -> str:
    """A checkpoint's one-line body: ``otel-audit checkpoint: 1000 records, sha256 3f2a...`` (``closing`` for the last)."""
    kind = "closing checkpoint" if attributes.get(AUDIT_CHECKPOINT_FINAL) else "checkpoint"
    return (f"otel-audit {kind}: {attributes.get(AUDIT_SEQ)} records, {attributes.get(AUDIT_CHAIN_ALGORITHM)}"
            + (", signed" if attributes.get(AUDIT_CHECKPOINT_KEY_ID) else ""))


def outcome_text(outcome: str, error_type: str | None) -> str:
    """An outcome with its error, as records and readers say it: ``success``, ``failure: FileNotFoundError``."""
    return outcome if error_type is None else f"{outcome}: {error_type}"


def format_body(attributes: dict) -> str:
    """The record's one-line body: ``root read data file:///x via pandas.read_csv (success)``."""
    principal = principal_text(attributes[USER_NAME], attributes.get(ENDUSER_ID))
    outcome = outcome_text(attributes[AUDIT_OUTCOME], attributes.get(ERROR_TYPE))
    return (
        f"{principal} {attributes[AUDIT_ACTION]} {attributes[AUDIT_RESOURCE_TYPE]} "
        f"{attributes[AUDIT_RESOURCE_URI]} via {attributes[AUDIT_API]} ({outcome})"
    )


def schema_table_markdown(attributes: "tuple[Attribute, ...] | None" = None) -> str:
    """The README's schema table, generated from :data:`ATTRIBUTES` (or ``attributes``)."""
    rows = ["| attribute | type | present | meaning |", "| --- | --- | --- | --- |"]
    for attr in ATTRIBUTES if attributes is None else attributes:
        rows.append(f"| `{attr.name}` | {attr.type} | {'always' if attr.always else 'when it applies'} | {attr.meaning} |")
    return "\n".join(rows)
