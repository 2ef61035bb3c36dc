"""``open``: ``builtins.open`` and ``io.open``.

``pathlib.Path.open``/``read_text``/``read_bytes``/``write_text`` go through
``io.open`` and are covered.  The mode decides the action: ``r`` is a read,
any of ``w``, ``a``, ``x``, ``+`` a write.  Opening an fd (an ``int``) names no
resource and is not recorded.  ``file.size`` is taken from the open file on
successful reads.  Anonymous temporary files (``tempfile.TemporaryFile``)
name no resource and are not recorded.
"""

from __future__ import annotations

import os

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, action_of_mode
from otel_audit.resources import ResourcePolicy, fspath_or_none, safe_text

def _describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
    # every open() of the process comes here, excluded ones too: the common case (a str path, no
    # opener) without a function call more than needed
    path = args[0] if args else kwargs.get("file")
    if type(path) is not str:
        if isinstance(path, int):
            return None
        path = fspath_or_none(path)
        if path is None:
            return None
    opener = args[7] if len(args) > 7 else kwargs.get("opener") if kwargs else None
    if opener is not None and os.path.isdir(path):
        return None  # tempfile.TemporaryFile: O_TMPFILE in a directory, an anonymous file, no resource
    attributes = policy.describe_path(path)
    if attributes is None:
        return None
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "r") if kwargs else "r"
    described = _MODES.get(mode) if type(mode) is str else None
    if described is None:
        mode = mode if isinstance(mode, str) else str(mode)
        described = (safe_text(mode), action_of_mode(mode))
        if len(_MODES) < 64:  # the handful of modes programs use; an odd one is worked out each time
            _MODES[mode] = described
    attributes[schema.AUDIT_MODE], attributes[schema.AUDIT_ACTION] = described
    return attributes


_MODES: dict[str, tuple[str, str]] = {}  # mode -> (as recorded, action)


def _after(attributes: dict, result) -> None:
    if attributes[schema.AUDIT_ACTION] == schema.ACTION_READ:
        attributes[schema.FILE_SIZE] = os.fstat(result.fileno()).st_size


def _patch_builtins(point: AccessPoint, module) -> None:
    point.wrap(module, "open", point.audited("builtins.open", None, _describe, after=_after))


ACCESS_POINT = AccessPoint("open", {"builtins": _patch_builtins, "io": _patch_builtins})
