"""The chain that makes a trail tamper-evident: ``audit.chain.hash`` on every record, signed checkpoints.

A stream is one process's records (its ``service.instance.id``), ordered by ``audit.seq``.  Record k
carries ``audit.chain.hash`` = H(hash of record k-1 | SHA-256 of record k's canonical form), with
H = SHA-256, or HMAC-SHA256 under the key in ``OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE``; record 1 starts from
32 zero bytes.  The canonical form (:func:`otel_audit.schema.canonical_record`) is what the record says,
independent of how it was serialized, so a record that went through a collector still verifies.

Checkpoint records (``audit.checkpoint``) are records of the stream too: every
``OTEL_PYTHON_AUDIT_CHECKPOINT_RECORDS`` records or ``OTEL_PYTHON_AUDIT_CHECKPOINT_SECONDS`` seconds (whichever
comes first, looked at when a record is made), and a closing one (``audit.checkpoint.final``) when the
process stops auditing (exit, ``multiprocessing`` workers' exit, ``uninstrument()``).  A checkpoint's
``audit.seq`` is the number of records the stream holds up to it.  With
``OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE`` (an Ed25519 private key) each checkpoint is signed: whoever holds the
trail and the public key can check it but not forge it.  ``otel-audit verify`` checks all of this
(:mod:`otel_audit.trail.verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat

from otel_audit import diagnostics, schema

GENESIS = bytes(32)
MIN_KEY_BYTES = 16
SIGNATURE_CONTEXT = b"otel-audit checkpoint v1\n"


class KeyFileError(ValueError):
    """A key file that cannot be used (the message says which file and why)."""


def _read_key_file(path: str, what: str) -> tuple[bytes, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFileError(f"{what} {diagnostics.shorten(path)} cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {diagnostics.shorten(path)} is not a regular file")
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    return data, info


def load_chain_key(path: str, *, secret: bool = True) -> bytes:
    """The HMAC key in ``path``: its bytes, surrounding whitespace stripped (a hex or base64 text works as
    it is, ``openssl rand -hex 32 > key``), at least :data:`MIN_KEY_BYTES`.  A key others may read is said."""
    data, info = _read_key_file(path, "the chain key file")
    key = data.strip()
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"the chain key file {diagnostics.shorten(path)} holds {len(key)} bytes; accepted: at "
                        f"least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
    if secret and info.st_mode & 0o077:
        diagnostics.report(f"the chain key file {diagnostics.shorten(path)} can be read by others "
                           f"(mode {stat.S_IMODE(info.st_mode):o}): whoever reads it can forge the chain; chmod 600 it",
                           key=f"key-mode:{path}")
    return key


def load_signing_key(path: str):
    """The Ed25519 private key in ``path`` (PEM, as ``openssl genpkey -algorithm ed25519`` writes it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data, info = _read_key_file(path, "the signing key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except Exception as exc:
        raise KeyFileError(f"the signing key file {diagnostics.shorten(path)} is not an unencrypted PEM private key "
                        f"({type(exc).__name__}); accepted: an Ed25519 key, `otel-audit keygen` or "
                        "`openssl genpkey -algorithm ed25519`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"the signing key file {diagnostics.shorten(path)} holds a {type(key).__name__}; accepted: "
                        "an Ed25519 private key")
    if info.st_mode & 0o077:
        diagnostics.report(f"the signing key file {diagnostics.shorten(path)} can be read by others "
                           f"(mode {stat.S_IMODE(info.st_mode):o}): whoever reads it can sign forged checkpoints; "
                           "chmod 600 it", key=f"key-mode:{path}")
    return key


def load_public_key(path: str):
    """An Ed25519 public key (PEM, or the private key's file: its public half)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data, _ = _read_key_file(path, "the public key file")
    try:
        key = serialization.load_pem_public_key(data)
    except Exception:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except Exception as exc:
            raise KeyFileError(f"the public key file {diagnostics.shorten(path)} is not a PEM key "
                            f"({type(exc).__name__}); accepted: an Ed25519 public key") from None
        if isinstance(key, Ed25519PrivateKey):
            key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"the public key file {diagnostics.shorten(path)} holds a {type(key).__name__}; accepted: an "
                        "Ed25519 public key")
    return key


def key_id(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(stream: str, seq: int, chain_hash: str) -> bytes:
    """What a checkpoint's signature signs: the stream, its length so far and its last hash."""
    return SIGNATURE_CONTEXT + f"{stream}\n{seq}\n{chain_hash}".encode("utf-8")


def next_hash(previous: bytes, content_digest: bytes, key: bytes | None) -> bytes:
    message = previous + content_digest
    return hmac.digest(key, message, "sha256") if key is not None else hashlib.sha256(message).digest()


class Chain:
    """This process's chain: the last record's hash, and the fast path to records' canonical forms.

    A canonical form is a head that repeats from record to record (resource, scope, severity, body, the
    attributes but ``audit.seq`` and ``audit.record.id``) and a tail that does not (timestamps, trace
    context, those two): :meth:`head` hashes a head once and keeps the hash state, :meth:`digest` goes on
    from it with a record's tail.  The bytes are the very ones :func:`schema.canonical_record` makes (tested)."""

    def __init__(self, key: bytes | None = None, signer=None):
        self.key = key
        self.algorithm = schema.CHAIN_HMAC_SHA256 if key is not None else schema.CHAIN_SHA256
        self.signer = signer
        self.key_id = key_id(signer.public_key()) if signer is not None else None
        self.previous = GENESIS
        self._resources: dict[int, tuple[object, str]] = {}  # id(resource) -> (resource, its canonical text)

    def link(self, content_digest: bytes) -> str:
        """The next record's ``audit.chain.hash`` (hex), from its canonical form's SHA-256; call in ``audit.seq``
        order."""
        self.previous = next_hash(self.previous, content_digest, self.key)
        return self.previous.hex()

    def sign(self, stream: str, seq: int, chain_hash: str) -> str | None:
        if self.signer is None:
            return None
        return self.signer.sign(checkpoint_message(stream, seq, chain_hash)).hex()

    def head_text(self, resource, scope_name: str, scope_version: str, severity_number: int, severity_text: str,
                  body, event_name: str, attributes: dict) -> str:
        """The canonical form up to its tail (the comma before it included)."""
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            if len(self._resources) > 16:
                self._resources.clear()
            known = self._resources[id(resource)] = (resource, schema.canonical_items_text(resource.attributes))
        items = schema.canonical_items_text({k: v for k, v in attributes.items() if k not in _TAIL})
        return (f"[{_dumps(schema.CANONICAL_VERSION)},{known[1]},{_dumps(scope_name or '')},{_dumps(scope_version or '')},"
                f"{int(severity_number or 0)},{_dumps(severity_text or '')},{_dumps(schema.canonical_value(body))},"
                f"{_dumps(event_name or '')},{items},")

    def head(self, *args) -> "hashlib._Hash":
        """SHA-256 of :meth:`head_text` so far, to be copied and finished with each record's tail."""
        return hashlib.sha256(self.head_text(*args).encode("utf-8"))

    @staticmethod
    def tail_text(time_unix_nano: int, observed_time_unix_nano: int, trace_id: int, span_id: int, flags: int,
                  seq: int, record_id: str) -> str:
        """The canonical form's tail (``seq`` an ``int``, ``record_id`` a ``str``, as the recorder makes them)."""
        if trace_id or span_id:
            context = f"\"{format(trace_id, '032x') if trace_id else ''}\",\"{format(span_id, '016x') if span_id else ''}\","
        else:
            context = '"","",'
        return f"{time_unix_nano or 0},{observed_time_unix_nano or 0},{context}{flags or 0},[\"i\",{seq}],[\"s\",{_string(record_id)}]]"

    @classmethod
    def digest(cls, head, *tail) -> bytes:
        """SHA-256 of a canonical form: ``head`` (from :meth:`head`, left as it is) and the tail's fields."""
        whole = head.copy()
        whole.update(cls.tail_text(*tail).encode("utf-8"))
        return whole.digest()

    def canonical(self, resource, scope_name, scope_version, time_unix_nano, observed_time_unix_nano, severity_number,
                  severity_text, body, event_name, trace_id, span_id, flags, attributes: dict) -> bytes:
        """The whole canonical form (what :meth:`head` and :meth:`digest` hash), for a record whose ``audit.seq``
        and ``audit.record.id`` are set."""
        return (self.head_text(resource, scope_name, scope_version, severity_number, severity_text, body, event_name,
                               attributes)
                + self.tail_text(time_unix_nano, observed_time_unix_nano, trace_id, span_id, flags,
                                 attributes[schema.AUDIT_SEQ], attributes[schema.AUDIT_RECORD_ID])).encode("utf-8")


_TAIL = frozenset(schema.CANONICAL_TAIL_ATTRIBUTES)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_string = json.encoder.encode_basestring  # a str as JSON text, as _dumps writes it
