"""otel-audit's own problems, reported on stderr once each.

Diagnostics go straight to ``sys.stderr`` and never through :mod:`logging`:
the OpenTelemetry logging handler may be attached to the root logger, and a
message about a failing export must not become a record in the same failing
pipeline (no feedback loop when the collector is down).

Each message is one line of at most :data:`MAX_LINE` characters whatever it
quotes: non-printable characters are escaped, and a longer message is cut in
the middle with the cut marked.  Values from outside (a bad setting, a path)
are quoted through :func:`shorten`.
"""

from __future__ import annotations

import sys
import threading

from otel_audit.schema import escape_unprintable

PREFIX = "otel-audit:"
MAX_LINE = 480  # characters of one diagnostic message, at most
MAX_VALUE = 80  # characters of a quoted value, at most

_reported: set[str] = set()
_lock = threading.Lock()


def shorten(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` quoted for a message: ``repr`` (so junk shows as escapes), cut in the middle when
    longer than ``limit``, with its full length said: ``'aaaa...aaaa' (100000 characters)``."""
    text = value if isinstance(value, str) else str(value)
    quoted = escape_unprintable(repr(text))
    if len(quoted) <= limit:
        return quoted
    head = limit * 2 // 3
    return f"{quoted[:head]}...{quoted[-(limit - head):]} ({len(text)} characters)"


def one_line(message: str) -> str:
    """``message`` as one printable line of at most :data:`MAX_LINE` characters."""
    message = escape_unprintable(message)
    if len(message) > MAX_LINE:
        head, tail = MAX_LINE * 5 // 8, MAX_LINE // 4
        cut = len(message) - head - tail
        message = f"{message[:head]}...[{cut} characters cut]...{message[-tail:]}"
    return message


def report(message: str, *, key: str | None = None) -> None:
    """Print ``otel-audit: <message>`` on stderr, once per ``key`` (default: the message)."""
    key = message if key is None else key
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
    try:
        stream = sys.stderr if sys.stderr is not None else sys.__stderr__
        if stream is not None:
            stream.write(f"{PREFIX} {one_line(message)}\n")
            stream.flush()
    except Exception:  # a closed or broken stderr must not break the host program
        pass


def report_internal_error(where: str, exc: BaseException) -> None:
    """An exception inside otel-audit: say so once per place and type; the user's call goes on."""
    report(
        f"internal error in {where}: {type(exc).__name__}: {exc} "
        "(the audited call proceeded; further errors of this kind are not repeated)",
        key=f"{where}:{type(exc).__name__}",
    )


def _forget() -> None:
    """For tests: report everything again."""
    with _lock:
        _reported.clear()
