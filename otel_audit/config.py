"""Configuration from ``OTEL_PYTHON_AUDIT_*`` environment variables.

:data:`SETTINGS` is the one table of variables (name, default, meaning, parser);
the README's configuration table is generated from it and a test keeps them in
step.  A bad value is reported once on stderr, naming the variable, the value
and what is accepted, and the default is used instead: auditing stays on
(``instrument()`` must never raise).  ``AuditConfig.from_env(strict=True)``
raises :class:`ConfigError` instead, for callers that want to fail fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

from otel_audit import diagnostics

HOOK_NAMES = ("open", "pandas", "torch", "joblib", "boto3")

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
            f"unknown hook {', '.join(repr(u) for u in unknown)}; accepted: 'all' or "
            f"comma-separated names from {', '.join(HOOK_NAMES)}"
        )
    return tuple(name for name in HOOK_NAMES if name in names)


def _parse_globs(value: str) -> tuple[str, ...]:
    patterns = []
    for pattern in _split(value):
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
        if len(ext) < 2 or ext.endswith(".") or any(c in ext for c in "/\\ *?"):
            raise ValueError(f"{ext!r} is not a file extension; accepted: comma-separated extensions such as .pt,.onnx")
        extensions.append(ext)
    return tuple(extensions)


def _parse_file(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty path; accepted: a file path")
    return value


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


def _parse_bytes(value: str) -> int:
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = (text[:-1], text[-1]) if text[-1:] in ("k", "m", "g") else (text, "")
    try:
        size = int(float(number) * _BYTE_UNITS[unit])
    except ValueError:
        size = 0
    if size < 1 << 20:
        raise ValueError("not a size of at least 1 MiB; accepted: bytes, or a number with k, M or G (e.g. 512M)")
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
    return os.path.abspath(os.path.expanduser(value))


def _default_spool_dir() -> str:
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
            "like `torch.load` and `joblib.load`).", _parse_extensions),
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
)


@dataclass(frozen=True)
class AuditConfig:
    hooks: tuple[str, ...] = HOOK_NAMES
    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()
    model_extensions: tuple[str, ...] = DEFAULT_MODEL_EXTENSIONS
    file: str = "./otel-audit.jsonl"
    delivery: str = "durable"
    spool_dir: str = field(default_factory=_default_spool_dir)
    spool_fsync: str = "batch"
    spool_max_bytes: int = 1 << 30
    on_failure: str = "open"
    shutdown_timeout: float = 5.0
    spans: bool = False
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
            except ValueError as exc:
                errors.append(f"{setting.env}={raw!r} is not accepted: {exc}. Using the default ({setting.default_text}).")
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
