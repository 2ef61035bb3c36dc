"""What a call touched: turning a library's path/URL argument into an audited resource.

Hooks hand the argument they got (``str``, ``bytes``, ``os.PathLike``, an fd,
a buffer...) to :meth:`ResourcePolicy.describe`.  It answers ``None`` for
anything that is not a named resource (buffers, fds) or that the policy
excludes, and otherwise the schema attributes that name the resource.

Values that come from outside (paths, keys, URLs) are made safe to export:
valid UTF-8 (undecodable bytes become ``\\xNN``), at most :data:`MAX_TEXT`
characters, and in the URI and body no control, bidi or other format characters.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import site
import sys
import sysconfig
import time
from urllib.parse import quote, urlsplit, urlunsplit

from otel_audit import diagnostics, schema
from otel_audit.config import AuditConfig

MAX_TEXT = 4096
_PACKAGE_METADATA = ".dist-info" + os.sep
_LEGACY_PACKAGE_METADATA = ".egg-info" + os.sep
_FILE_URI_SAFE = "/-._~!$&'()*+,;=:@"
# weights files whose extension says nothing by itself: model when a config.json lies beside them
_WEIGHTS_BESIDE_CONFIG = (".bin", ".h5", ".msgpack")


def safe_text(text: str) -> str:
    """Exportable text: valid UTF-8, length-capped (the cap is marked, not silent)."""
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}...[{len(text) - MAX_TEXT} more characters]"
    return text


def printable(text: str) -> str:
    """:func:`safe_text` with every non-printable character escaped (controls, bidi and other format
    characters): fit for a one-line body that a terminal or a log viewer shows."""
    return schema.escape_unprintable(safe_text(text))


def file_uri(path: str) -> str:
    return safe_text("file://" + quote(os.fsencode(path), safe=_FILE_URI_SAFE))


def s3_uri(bucket: str, key: str | None) -> str:
    return printable(f"s3://{bucket}/{key or ''}")


def redact_url(url: str) -> str:
    """A URL without credentials: userinfo dropped, query values replaced (presigned URLs carry secrets)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{item.partition('=')[0]}=REDACTED" for item in parts.query.split("&") if item)
    if "://" in url:  # kept even with an empty host (memory:///data/a.csv), which urlunsplit would drop
        return printable(f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else ""))
    return printable(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


REDACTED = "REDACTED"
REDACTED_ATTRIBUTES = (schema.AUDIT_RESOURCE_URI, schema.FILE_PATH, schema.AWS_S3_KEY)


def _mask(match: re.Match) -> str:
    """The match as ``REDACTED``, or, when the pattern has groups, with each group that took part masked."""
    if not match.re.groups:
        return REDACTED
    text, start = match.group(0), match.start()
    out, position = [], 0
    for index in range(1, match.re.groups + 1):
        begin, end = match.span(index)
        if begin < 0 or begin - start < position:  # did not take part, or inside a group already masked
            continue
        out += [text[position:begin - start], REDACTED]
        position = end - start
    out.append(text[position:])
    return "".join(out)


class Redactor:
    """``OTEL_PYTHON_AUDIT_REDACT``: masks what the patterns match in the resource attributes of a record."""

    def __init__(self, patterns: tuple[str, ...]):
        self._patterns = [re.compile(p) for p in patterns]

    def __call__(self, attributes: dict) -> None:
        for name in REDACTED_ATTRIBUTES:
            value = attributes.get(name)
            if value is not None:
                for pattern in self._patterns:
                    value = pattern.sub(_mask, value)
                attributes[name] = value


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


@functools.lru_cache(maxsize=None)
def default_excluded_prefixes() -> tuple[str, ...]:
    """Directories whose files are the interpreter's, libraries' or the OS's, not the user's data
    (found once per process: the call site and the resource policy both ask at start-up)."""
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


_UNKNOWN = object()
VERDICTS_KEPT = 4096  # paths whose verdict is kept; the cache starts over when full
CONFIG_CHECK_SECONDS = 1.0  # how long a directory's answer to "is there a config.json beside" is kept


class ResourcePolicy:
    """Which resources are audited, and how each is named and typed."""

    def __init__(self, config: AuditConfig):
        self._include = _compile_globs(config.include_paths)
        self._exclude = _compile_globs(config.exclude_paths)
        self._excluded_prefixes: tuple[str, ...] | None = None  # found at the first access, not at start-up
        self._excluded_dirs: frozenset[str] = frozenset()
        self._model_extensions = tuple(config.model_extensions)
        self._model_paths = _compile_globs(config.model_paths)
        self._said_outside_include = self._said_excluded = False
        # absolute path as given -> how it is named (see _name_path), or None when it is not audited: the
        # policy's verdict on a path does not change, and programs open the same paths again and again (an
        # access then costs a dict lookup instead of normpath, the globs, quoting the URI)
        self._verdicts: dict[str, tuple | None] = {}
        self._configs_seen: dict[str, tuple[float, bool]] = {}  # directory -> (when looked, has a config.json)

    # -- policy ------------------------------------------------------------
    def _excluded_by_default(self, path: str) -> bool:
        if self._excluded_prefixes is None:
            self._excluded_dirs = frozenset(prefix.rstrip(os.sep) for prefix in default_excluded_prefixes())
            self._excluded_prefixes = default_excluded_prefixes()
        return (
            path.startswith(self._excluded_prefixes)
            or path in self._excluded_dirs
            or _PACKAGE_METADATA in path  # importlib.metadata reading installed packages' metadata
            or _LEGACY_PACKAGE_METADATA in path
        )

    def audits_path(self, path: str) -> bool:
        """``path`` is absolute and normalised."""
        if self._include is not None:
            if not self._include.match(path):
                if not self._said_outside_include and not self._excluded_by_default(path):
                    self._said_outside_include = True
                    self._left_out(path, "is outside OTEL_PYTHON_AUDIT_INCLUDE_PATHS")
                return False
        elif self._excluded_by_default(path):
            return False
        return self._exclude is None or not self._excluded(path)

    def audits_uri(self, uri: str) -> bool:
        if self._include is not None and not self._include.match(uri):
            if not self._said_outside_include:
                self._said_outside_include = True
                self._left_out(uri, "is outside OTEL_PYTHON_AUDIT_INCLUDE_PATHS")
            return False
        return self._exclude is None or not self._excluded(uri)

    def _excluded(self, name: str) -> bool:
        if not self._exclude.match(name):
            return False
        if not self._said_excluded:
            self._said_excluded = True
            self._left_out(name, "matches OTEL_PYTHON_AUDIT_EXCLUDE_PATHS")
        return True

    @staticmethod
    def _left_out(name: str, why: str) -> None:
        """A setting kept a resource out of the trail: said once per process and setting, so a setting
        that matches more than meant never narrows auditing silently."""
        diagnostics.report(f"not audited: {diagnostics.shorten(name)}, which {why} (said once; "
                           "further resources it leaves out are not listed)")

    def resource_type(self, name: str, api_type: str, local: bool = False, uri: str | None = None) -> str:
        """``model`` when the API loads models, the name has a model extension or matches
        ``OTEL_PYTHON_AUDIT_MODEL_PATHS``, or it is a local weights file (``.bin``, ``.h5``,
        ``.msgpack``) beside a ``config.json`` (a Hugging Face model directory); else ``data``."""
        if api_type == schema.TYPE_MODEL:
            return schema.TYPE_MODEL
        lowered = name.lower()
        if lowered.endswith(self._model_extensions) or (
                self._model_paths is not None and self._model_paths.match(uri if uri is not None else name)):
            return schema.TYPE_MODEL
        if local and lowered.endswith(_WEIGHTS_BESIDE_CONFIG) and self._beside_config(os.path.dirname(name)):
            return schema.TYPE_MODEL
        return schema.TYPE_DATA

    def _beside_config(self, directory: str) -> bool:
        """A ``config.json`` is in ``directory``: looked at again after :data:`CONFIG_CHECK_SECONDS` (a loop
        reading a directory's ``.bin`` files asks once, not once per file and read)."""
        now = time.monotonic()
        seen = self._configs_seen.get(directory)
        if seen is not None and now - seen[0] < CONFIG_CHECK_SECONDS:
            return seen[1]
        found = os.path.isfile(os.path.join(directory, "config.json"))
        if len(self._configs_seen) >= VERDICTS_KEPT:
            self._configs_seen.clear()
        self._configs_seen[directory] = (now, found)
        return found

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
        verdicts = self._verdicts
        named = verdicts.get(path, _UNKNOWN)
        if named is _UNKNOWN:
            if not path or "\x00" in path:
                return None  # the call itself will refuse it; there is no resource to name
            named = self._name_path(os.path.abspath(path))
            if path[0] == os.sep:  # a relative path's verdict depends on the working directory: not kept
                if len(verdicts) >= VERDICTS_KEPT:
                    verdicts.clear()
                verdicts[path] = named
        if named is None:
            return None
        uri, text, by_name, directory = named
        if api_type == schema.TYPE_MODEL:
            kind = schema.TYPE_MODEL
        elif by_name is not None:
            kind = by_name
        else:  # weights, if a config.json is beside them: asked again, it may have appeared
            kind = schema.TYPE_MODEL if self._beside_config(directory) else schema.TYPE_DATA
        return {schema.AUDIT_RESOURCE_URI: uri, schema.AUDIT_RESOURCE_TYPE: kind, schema.FILE_PATH: text}

    def _name_path(self, absolute: str) -> "tuple[str, str, str | None, str] | None":
        """What naming an absolute path takes, done once per path: (URI, exportable path, its type when the
        name alone decides it, else the directory to look for a ``config.json`` in), or ``None`` when the
        path is not audited."""
        if not self.audits_path(absolute):
            return None
        kind = self.resource_type(absolute, schema.TYPE_DATA)
        if kind == schema.TYPE_DATA and absolute.lower().endswith(_WEIGHTS_BESIDE_CONFIG):
            return file_uri(absolute), safe_text(absolute), None, os.path.dirname(absolute)
        return file_uri(absolute), safe_text(absolute), kind, ""

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
            schema.AUDIT_RESOURCE_TYPE: self.resource_type(urlsplit(url).path, api_type, uri=uri),
        }

    def describe_s3(self, bucket: str, key: str | None, api_type: str = schema.TYPE_DATA) -> dict | None:
        uri = s3_uri(bucket, key)
        if not self.audits_uri(uri):
            return None
        attributes = {
            schema.AUDIT_RESOURCE_URI: uri,
            schema.AUDIT_RESOURCE_TYPE: self.resource_type(key or "", api_type, uri=uri),
            schema.AWS_S3_BUCKET: printable(bucket),
        }
        if key is not None:
            attributes[schema.AWS_S3_KEY] = printable(key)
        return attributes
