"""Per-call context: who the access is for, and whether an audited call is already under way.

Both live in :mod:`contextvars`, so they follow ``asyncio`` tasks and are
copied into the worker threads otel-audit propagates context to (s3transfer).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from opentelemetry import baggage

ENDUSER_BAGGAGE_KEY = "enduser.id"

_enduser: contextvars.ContextVar[str | None] = contextvars.ContextVar("otel_audit_enduser", default=None)

# Set while an audited call runs: the accesses it makes internally
# (pandas.read_csv -> open) belong to it and are not recorded again.  True, or, for
# a call that lists the files it touched (from_pretrained), the list they are added to.
in_audited_call: contextvars.ContextVar["bool | list"] = contextvars.ContextVar("otel_audit_in_audited_call",
                                                                              default=False)


@contextlib.contextmanager
def enduser(user_id: str) -> Iterator[None]:
    """Attribute every access inside the block to application end user ``user_id``.

    >>> with otel_audit.enduser("alice@example.com"):
    ...     model = torch.load("model.pt")   # record carries enduser.id=alice@example.com
    """
    token = _enduser.set(str(user_id))
    try:
        yield
    finally:
        _enduser.reset(token)


def current_enduser() -> str | None:
    """The end user set by :func:`enduser`, else the ``enduser.id`` baggage entry, else ``None``."""
    user = _enduser.get()
    if user is None:
        value = baggage.get_baggage(ENDUSER_BAGGAGE_KEY)
        if value is not None:
            user = str(value)
    return user
