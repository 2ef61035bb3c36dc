"""otel-audit's own problems, reported on stderr once each.

Diagnostics go straight to ``sys.stderr`` and never through :mod:`logging`:
the OpenTelemetry logging handler may be attached to the root logger, and a
message about a failing export must not become a record in the same failing
pipeline (no feedback loop when the collector is down).
"""

from __future__ import annotations

import sys
import threading

PREFIX = "otel-audit:"

_reported: set[str] = set()
_lock = threading.Lock()


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
            stream.write(f"{PREFIX} {message}\n")
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
