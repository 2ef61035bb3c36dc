"""What a call touched: turning a library's path/URL argument into an audited resource.

Hooks hand the argument they got (``str``, ``bytes``, ``os.PathLike``, an fd,
a buffer...) to :meth:`ResourcePolicy.describe`.  It answers ``None`` for
anything that is not a named resource (buffers, fds) or that the policy
excludes, and otherwise the schema attributes that name the resource.

Values that come from outside (paths, keys, URLs) are made safe to export:
valid UTF-8 (undecodable bytes become ``\\xNN``), at most :data:`MAX_TEXT`
characters, and in the URI and body no control characters.
"""

from __future__ import annotations

import fnmatch
import os
import re
import site
import sys
import sysconfig
from urllib.parse import quote, urlsplit, urlunsplit

from otel_audit import schema
from otel_audit.config import AuditConfig

MAX_TEXT = 4096
_PACKAGE_METADATA = ".dist-info" + os.sep
_LEGACY_PACKAGE_METADATA = ".egg-info" + os.sep
_FILE_URI_SAFE = "/-._~!$&'()*+,;=:@"
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def safe_text(text: str) -> str:
    """Exportable text: valid UTF-8, length-capped (the cap is marked, not silent)."""
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}...[{len(text) - MAX_TEXT} more characters]"
    return text


def printable(text: str) -> str:
    """:func:`safe_text` with control characters escaped: fit for a one-line body."""
    text = safe_text(text)
    return text if text.isprintable() else text.translate(_CONTROL_ESCAPES)


def file_uri(path: str) -> str:
    return safe_text("file://" + quote(os.fsencode(path), safe=_FILE_URI_SAFE))


def s3_uri(bucket: str, key: str | None) -> str:
    return printable(f"s3://{bucket}/{key or ''}")


def redact_url(url: str) -> str:
    """A URL without credentials: userinfo dropped, query values replaced (presigned URLs carry secrets)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{item.partition('=')[0]}=REDACTED" for item in parts.query.split("&") if item)
    return printable(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def fspath_or_none(target: object) -> str | None:
    """The path in a ``str``/``bytes``/``PathLike`` argument; ``None`` for fds, buffers and the rest."""
    if isinstance(target, str):
        return target
    if isinstance(target, bytes):
        return os.fsdecode(target)
    if isinstance(target, os.PathLike):
        try:
            path = os.fspath(target)
        except Exception:  # a broken __fspath__: the library will raise it to the caller itself
            return None
        return os.fsdecode(path) if isinstance(path, bytes) else path
    return None


def _compile_globs(patterns: tuple[str, ...]) -> re.Pattern | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def default_excluded_prefixes() -> tuple[str, ...]:
    """Directories whose files are the interpreter's, libraries' or the OS's, not the user's data."""
    dirs = {"/proc", "/sys", "/dev", os.path.dirname(os.path.abspath(__file__))}
    paths = sysconfig.get_paths()
    dirs.update(paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib", "include", "platinclude") if name in paths)
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except Exception:  # some embedded interpreters lack these
        pass
    if sys.prefix != sys.base_prefix:  # a virtualenv: all of it is tooling
        dirs.add(sys.prefix)
    # zip imports (python311.zip is on sys.path whether it exists or not)
    dirs.update(e for e in sys.path if e and (e.endswith((".zip", ".egg", ".pyz", ".whl")) or os.path.isfile(e)))
    # the time zone database, read by datetime/zoneinfo/pandas for any timestamp work
    dirs.update((sysconfig.get_config_var("TZPATH") or "").split(os.pathsep))
    prefixes = set()
    for d in dirs:
        if d:
            for variant in {os.path.abspath(d), os.path.realpath(d)}:
                prefixes.add(variant.rstrip(os.sep) + os.sep)
    return tuple(sorted(prefixes))


class ResourcePolicy:
    """Which resources are audited, and how each is named and typed."""

    def __init__(self, config: AuditConfig):
        self._include = _compile_globs(config.include_paths)
        self._exclude = _compile_globs(config.exclude_paths)
        self._excluded_prefixes = default_excluded_prefixes()
        self._excluded_dirs = frozenset(prefix.rstrip(os.sep) for prefix in self._excluded_prefixes)
        self._model_extensions = tuple(config.model_extensions)

    # -- policy ------------------------------------------------------------
    def audits_path(self, path: str) -> bool:
        """``path`` is absolute and normalised."""
        if self._include is not None:
            if not self._include.match(path):
                return False
        elif (
            path.startswith(self._excluded_prefixes)
            or path in self._excluded_dirs
            or _PACKAGE_METADATA in path  # importlib.metadata reading installed packages' metadata
            or _LEGACY_PACKAGE_METADATA in path
        ):
            return False
        return self._exclude is None or not self._exclude.match(path)

    def audits_uri(self, uri: str) -> bool:
        if self._include is not None and not self._include.match(uri):
            return False
        return self._exclude is None or not self._exclude.match(uri)

    def resource_type(self, name: str, api_type: str) -> str:
        if api_type == schema.TYPE_MODEL:
            return schema.TYPE_MODEL
        return schema.TYPE_MODEL if name.lower().endswith(self._model_extensions) else schema.TYPE_DATA

    # -- naming ------------------------------------------------------------
    def describe(self, target: object, api_type: str = schema.TYPE_DATA) -> dict | None:
        """Resource attributes for a path or URL argument, or ``None`` (not a named resource, or excluded)."""
        path = fspath_or_none(target)
        if path is None:
            return None
        if "://" in path:
            return self.describe_url(path, api_type)
        return self.describe_path(path, api_type)

    def describe_path(self, path: str, api_type: str = schema.TYPE_DATA) -> dict | None:
        if not path or "\x00" in path:
            return None  # the call itself will refuse it; there is no resource to name
        path = os.path.abspath(path)
        if not self.audits_path(path):
            return None
        return {
            schema.AUDIT_RESOURCE_URI: file_uri(path),
            schema.AUDIT_RESOURCE_TYPE: self.resource_type(path, api_type),
            schema.FILE_PATH: safe_text(path),
        }

    def describe_url(self, url: str, api_type: str = schema.TYPE_DATA) -> dict | None:
        scheme = url.partition("://")[0].lower()
        if scheme == "file":
            return self.describe_path(urlsplit(url).path, api_type)
        if scheme in ("s3", "s3a", "s3n"):
            parts = urlsplit(url)
            return self.describe_s3(parts.netloc.rpartition("@")[2], parts.path.lstrip("/"), api_type)
        uri = redact_url(url)
        if not self.audits_uri(uri):
            return None
        return {
            schema.AUDIT_RESOURCE_URI: uri,
            schema.AUDIT_RESOURCE_TYPE: self.resource_type(urlsplit(url).path, api_type),
        }

    def describe_s3(self, bucket: str, key: str | None, api_type: str = schema.TYPE_DATA) -> dict | None:
        uri = s3_uri(bucket, key)
        if not self.audits_uri(uri):
            return None
        attributes = {
            schema.AUDIT_RESOURCE_URI: uri,
            schema.AUDIT_RESOURCE_TYPE: self.resource_type(key or "", api_type),
            schema.AWS_S3_BUCKET: printable(bucket),
        }
        if key is not None:
            attributes[schema.AWS_S3_KEY] = printable(key)
        return attributes
