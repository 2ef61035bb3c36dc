"""Work an audited call hands to a thread pool belongs to that call.

``concurrent.futures.ThreadPoolExecutor.submit`` (and so ``map``) made inside an audited
call runs its task in a copy of the caller's context: the accesses the task makes are
folded into the call's record (``datasets.load_dataset`` memory-maps its cache files on
pool threads) instead of being recorded on their own with no user line.  Outside audited
calls nothing changes.  Installed with every set of hooks; it records nothing itself.
"""

from __future__ import annotations

import contextvars

from otel_audit.context import in_audited_call
from otel_audit.hooks._base import AccessPoint


def _submit_in_callers_context(wrapped, instance, args, kwargs):
    if in_audited_call.get() is not False and args:
        # a fresh copy per task: one Context cannot be entered by two threads at once
        args = (contextvars.copy_context().run, *args)
    return wrapped(*args, **kwargs)


def _patch_thread(point: AccessPoint, module) -> None:
    point.wrap(module.ThreadPoolExecutor, "submit", _submit_in_callers_context)


ACCESS_POINT = AccessPoint("threads", {"concurrent.futures.thread": _patch_thread})
