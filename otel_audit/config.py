"""Configuration from ``OTEL_PYTHON_AUDIT_*`` environment variables.

:data:`SETTINGS` is the one table of variables (name, default, meaning, parser);
the README's configuration table is generated from it and a test keeps them in
step.  A bad value is reported once on stderr, naming the variable, the value
and what is accepted, and the default is used instead: auditing stays on
(``instrument()`` must never raise).  ``AuditConfig.from_env(strict=True)``
raises :class:`ConfigError` instead, for callers that want to fail fast.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

from otel_audit import diagnostics

HOOK_NAMES = ("open", "os", "pandas", "pyarrow", "polars", "numpy", "h5py", "pillow", "sqlite3", "torch", "safetensors",
              "huggingface", "datasets", "fsspec", "joblib", "boto3")

DEFAULT_MODEL_EXTENSIONS = (
    ".pt", ".pth", ".ckpt", ".safetensors", ".onnx", ".joblib",
    ".gguf", ".tflite", ".keras", ".mlmodel", ".pb",
)


class ConfigError(ValueError):
    """A configuration value is not accepted; the message names variable, value and what is accepted."""


class Setting(NamedTuple):
    env: str
    field: str
    default_text: str  # the default as the README shows it
    meaning: str
    parse: Callable[[str], object]


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_hooks(value: str) -> tuple[str, ...]:
    names = [name.lower() for name in _split(value)]
    if not names or names == ["all"]:
        return HOOK_NAMES
    unknown = [name for name in names if name not in HOOK_NAMES]
    if unknown:
        raise ValueError(
            f"unknown hook {', '.join(diagnostics.shorten(u) for u in unknown)}; accepted: 'all' or "
            f"comma-separated names from {', '.join(HOOK_NAMES)}"
        )
    return tuple(name for name in HOOK_NAMES if name in names)


PATH_MAX = 4096  # bytes of a path the kernel accepts, its terminating NUL included
NAME_MAX = 255  # bytes of one name in it
PREFIX = "OTEL_PYTHON_AUDIT_"


def _check_path_length(path: str, what: str) -> None:
    encoded = os.fsencode(path)
    longest = max((len(name) for name in encoded.split(b"/")), default=0)
    if len(encoded) >= PATH_MAX or longest > NAME_MAX:
        raise ValueError(f"too long ({len(encoded)} bytes, longest name {longest}); accepted: {what} of at most "
                         f"{PATH_MAX - 1} bytes, each name in it at most {NAME_MAX}")


def _parse_globs(value: str) -> tuple[str, ...]:
    patterns = []
    for pattern in _split(value):
        if len(pattern) >= PATH_MAX:
            raise ValueError(f"a glob of {len(pattern)} characters, which no path can match; accepted: "
                             f"comma-separated globs of at most {PATH_MAX - 1} characters each")
        pattern = os.path.expanduser(pattern)
        # Patterns are matched against absolute paths and URIs; a relative one
        # would silently never match, so anchor it at the working directory.
        if not (pattern.startswith(("/", "*", "?", "[")) or "://" in pattern):
            pattern = os.path.join(os.getcwd(), pattern)
        patterns.append(pattern)
    return tuple(patterns)


def _parse_extensions(value: str) -> tuple[str, ...]:
    extensions = []
    for ext in _split(value):
        ext = ext.lower()
        if not ext.startswith("."):
            ext = "." + ext
        if not 2 <= len(ext) <= 32 or ext.endswith(".") or any(c in ext for c in "/\\ *?"):
            raise ValueError(f"{diagnostics.shorten(ext)} is not a file extension; accepted: comma-separated extensions such as .pt,.onnx")
        extensions.append(ext)
    return tuple(extensions)


def _parse_file(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty path; accepted: a file path")
    _check_path_length(value, "a file path")
    if os.path.isdir(value):
        raise ValueError("a directory; accepted: a file path (the trail file in it, e.g. DIR/otel-audit.jsonl)")
    return value


def _parse_key_file(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty path; accepted: the path of a key file")
    _check_path_length(value, "a file path")
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path):
        raise ValueError("no such file; accepted: the path of an existing key file (the key itself never goes in "
                         "a variable)")
    return path


def _parse_count(value: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if not 1 <= count <= 1_000_000_000:
        raise ValueError("not a whole number in range; accepted: a whole number from 1 to 1000000000")
    return count


def _choice(*accepted: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in accepted:
            raise ValueError(f"not a known value; accepted: {', '.join(accepted)}")
        return value

    return parse


def _parse_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise ValueError("not a number of seconds in range; accepted: a number from 0 to 3600")
    return seconds


_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_MAX_BYTES = 1 << 60


def _parse_bytes(value: str) -> int:
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = (text[:-1], text[-1]) if text[-1:] in ("k", "m", "g") else (text, "")
    try:
        size = int(float(number) * _BYTE_UNITS[unit])
    except (ValueError, OverflowError):  # not a number; inf, nan
        size = 0
    if not 1 << 20 <= size <= _MAX_BYTES:
        raise ValueError("not a size from 1 MiB to 1 EiB; accepted: bytes, or a number with k, M or G (e.g. 512M)")
    return size


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _parse_bool(value: str) -> bool:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ValueError("not a boolean; accepted: true or false (also 1/0, yes/no, on/off)") from None


def _parse_directory(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty path; accepted: a directory path")
    path = os.path.abspath(os.path.expanduser(value))
    _check_path_length(path, "a directory path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError("not a directory; accepted: a directory path (created if missing)")
    return path


def _split_patterns(value: str) -> list[str]:
    """Comma-separated, where ``\\,`` is a comma inside a pattern (as in ``\\d{2\\,4}``)."""
    return [p.replace("\\,", ",").strip() for p in re.split(r"(?<!\\),", value) if p.strip()]


def _parse_redactions(value: str) -> tuple[str, ...]:
    patterns = _split_patterns(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{diagnostics.shorten(pattern)} is not a regular expression ({exc}); accepted: comma-separated "
                             "Python regular expressions (a comma inside one written \\,)") from None
    return tuple(patterns)


def default_spool_dir() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "otel-audit", "spool")


SETTINGS: tuple[Setting, ...] = (
    Setting("OTEL_PYTHON_AUDIT_HOOKS", "hooks", "all",
            "Access points to patch: `all`, or comma-separated names from "
            + ", ".join(f"`{h}`" for h in HOOK_NAMES) + ".", _parse_hooks),
    Setting("OTEL_PYTHON_AUDIT_INCLUDE_PATHS", "include_paths", "(unset)",
            "Comma-separated globs (matched against the absolute path or URI; `*` also matches `/`; "
            "relative globs are anchored at the working directory). When set, only matching resources are "
            "audited, default exclusions included.", _parse_globs),
    Setting("OTEL_PYTHON_AUDIT_EXCLUDE_PATHS", "exclude_paths", "(unset)",
            "Comma-separated globs of resources never audited, on top of the default exclusions "
            "(interpreter, stdlib, site-packages and virtualenv, zip imports, package metadata (`*.dist-info/`, `*.egg-info/`), the time zone database, `/proc`, `/sys`, `/dev`, otel-audit itself).",
            _parse_globs),
    Setting("OTEL_PYTHON_AUDIT_MODEL_EXTENSIONS", "model_extensions", ",".join(DEFAULT_MODEL_EXTENSIONS),
            "File extensions whose resources are `model` (others are `data`, unless the API loads models, "
            "like `torch.load` and `joblib.load`). `.bin`, `.h5` and `.msgpack` files are `model` too when a "
            "`config.json` lies beside them (a Hugging Face model directory).", _parse_extensions),
    Setting("OTEL_PYTHON_AUDIT_MODEL_PATHS", "model_paths", "(unset)",
            "Comma-separated globs (as in `OTEL_PYTHON_AUDIT_INCLUDE_PATHS`) of resources that are `model` "
            "whatever their extension, e.g. `/models/*,s3://ml-prod/weights/*`.", _parse_globs),
    Setting("OTEL_PYTHON_AUDIT_FILE", "file", "./otel-audit.jsonl",
            "Where the embedded sink (`OTEL_LOGS_EXPORTER=audit_file`) appends OTLP JSON lines.", _parse_file),
    Setting("OTEL_PYTHON_AUDIT_DELIVERY", "delivery", "durable",
            "`durable`: each record is written to the local spool before the audited call returns and shipped "
            "until the exporters acknowledge it; `memory`: the SDK's in-memory batch pipeline (records can be lost).",
            _choice("durable", "memory")),
    Setting("OTEL_PYTHON_AUDIT_SPOOL_DIR", "spool_dir", "$XDG_STATE_HOME/otel-audit/spool (~/.local/state/...)",
            "Spool root (one directory per `service.name`, created owner-only).", _parse_directory),
    Setting("OTEL_PYTHON_AUDIT_SPOOL_FSYNC", "spool_fsync", "batch",
            "`never` (survives the process dying), `batch` (fsync once per shipment: also power loss, for "
            "all but the last moments), `always` (fsync per record).", _choice("never", "batch", "always")),
    Setting("OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES", "spool_max_bytes", "1073741824",
            "Cap on the spool of one service (bytes; suffixes `k`, `M`, `G` accepted). At the cap, "
            "`OTEL_PYTHON_AUDIT_ON_FAILURE` decides.", _parse_bytes),
    Setting("OTEL_PYTHON_AUDIT_ON_FAILURE", "on_failure", "open",
            "When a record cannot be spooled (cap reached, directory unwritable, disk full): `open` lets the "
            "access proceed, sends the record through the in-memory SDK pipeline and reports the loss on "
            "stderr; `closed` refuses the access with `PermissionError` before it happens.",
            _choice("open", "closed")),
    Setting("OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT", "shutdown_timeout", "5",
            "Seconds the program's exit may wait for undelivered records; the rest stays in the spool.",
            _parse_seconds),
    Setting("OTEL_PYTHON_AUDIT_SPANS", "spans", "false",
            "`true`: each audited access is also a span (kind INTERNAL, named `audit <action> <api>`, the same "
            "attributes, ERROR status unless the outcome is `success`) under the current span, and its record "
            "carries that span's trace and span id, so a run's trace in Jaeger shows what it touched.",
            _parse_bool),
    Setting("OTEL_PYTHON_AUDIT_POLICY", "policy", "(unset)",
            "A policy file (YAML or JSON, see [Access policy](#access-policy)) that grants or denies each "
            "audited access before it happens: a denied access raises `otel_audit.AccessDenied` (a "
            "`PermissionError`) and is recorded with outcome `denied`. Reloaded when it changes (looked at "
            "once a second). A file that cannot be loaded is reported; then `OTEL_PYTHON_AUDIT_ON_FAILURE=closed` "
            "denies every audited access and `open` lets them through, each record saying `not_enforced`.",
            _parse_file),
    Setting("OTEL_PYTHON_AUDIT_POLICY_MODE", "policy_mode", "(unset)",
            "`enforce` or `dry-run`, overriding the policy file's `mode` (unset: the file's): in a dry run nothing is refused and "
            "records of accesses the policy denies carry `audit.policy.decision=would_deny`.",
            _choice("enforce", "dry-run")),
    Setting("OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE", "chain_key_file", "(unset)",
            "A file holding a secret key (at least 16 bytes, e.g. `openssl rand -hex 32`): the records' chain "
            "(`audit.chain.hash`) is then HMAC-SHA256 under it, which nobody without the key can recompute; "
            "unset, SHA-256 (detects damage and edits, not a forger who recomputes the chain). "
            "`otel-audit verify --key-file` checks it.", _parse_key_file),
    Setting("OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE", "signing_key_file", "(unset)",
            "An Ed25519 private key (PEM; `otel-audit keygen`): every checkpoint record is signed with it, and "
            "`otel-audit verify --public-key` needs only the public key to check them.", _parse_key_file),
    Setting("OTEL_PYTHON_AUDIT_CHECKPOINT_RECORDS", "checkpoint_records", "1000",
            "A checkpoint record (the stream's length and last hash, signed with a signing key) after this "
            "many records, or sooner (`OTEL_PYTHON_AUDIT_CHECKPOINT_SECONDS`).", _parse_count),
    Setting("OTEL_PYTHON_AUDIT_CHECKPOINT_SECONDS", "checkpoint_seconds", "60",
            "A checkpoint record when a record is made this many seconds after the last checkpoint.",
            _parse_seconds),
    Setting("OTEL_PYTHON_AUDIT_REDACT", "redact", "(unset)",
            "Comma-separated Python regular expressions (a comma inside one written `\\,`) masked in "
            "`audit.resource.uri`, `file.path` and `aws.s3.key` (and so in the body and audit spans) before "
            "the record is made: each match, or each of its groups when it has any, becomes `REDACTED`. Off "
            "by default: resource names are what the trail is about. For names that carry personal data, "
            "such as Hive-style partitions: `patient_id=([^/]+)` records `.../patient_id=REDACTED/part-0.parquet`.",
            _parse_redactions),
)

KNOWN_VARIABLES = frozenset(s.env for s in SETTINGS)


@dataclass(frozen=True)
class AuditConfig:
    hooks: tuple[str, ...] = HOOK_NAMES
    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()
    model_extensions: tuple[str, ...] = DEFAULT_MODEL_EXTENSIONS
    model_paths: tuple[str, ...] = ()
    file: str = "./otel-audit.jsonl"
    delivery: str = "durable"
    spool_dir: str = field(default_factory=default_spool_dir)
    spool_fsync: str = "batch"
    spool_max_bytes: int = 1 << 30
    on_failure: str = "open"
    shutdown_timeout: float = 5.0
    spans: bool = False
    redact: tuple[str, ...] = ()
    policy: str | None = None
    policy_mode: str | None = None
    chain_key_file: str | None = None
    signing_key_file: str | None = None
    checkpoint_records: int = 1000
    checkpoint_seconds: float = 60.0
    chain: bool = True  # (in code only, for benchmarks: no variable can switch the chain off)
    errors: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, strict: bool = False) -> "AuditConfig":
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        errors: list[str] = []
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None:
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except Exception as exc:  # any parser failure is a bad value: never one that stops auditing
                default = "unset" if setting.default_text == "(unset)" else setting.default_text
                errors.append(f"{setting.env}={diagnostics.shorten(raw)} is not accepted: {exc}. "
                              f"Using the default ({default}).")
        for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in KNOWN_VARIABLES):
            close = [PREFIX + match for match in difflib.get_close_matches(  # the part after the prefix
                name[len(PREFIX):], [known[len(PREFIX):] for known in KNOWN_VARIABLES], n=1)]
            shown = name if name.isidentifier() and len(name) <= diagnostics.MAX_VALUE else diagnostics.shorten(name)
            errors.append(f"{shown} is not an otel-audit setting and is ignored"
                          + (f"; did you mean {close[0]}?" if close else "; the settings are listed in the README"))
        if errors and strict:
            raise ConfigError("\n".join(errors))
        for message in errors:
            diagnostics.report(message)
        return cls(errors=tuple(errors), **values)


def settings_table_markdown() -> str:
    """The README's configuration table, generated from :data:`SETTINGS`."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        rows.append(f"| `{s.env}` | `{s.default_text}` | {s.meaning} |")
    return "\n".join(rows)
