"""One module per access point (``<hook>_hook.py``); each knows only its library and exports ``ACCESS_POINT``.

The hook names are ``config.HOOK_NAMES`` (``OTEL_PYTHON_AUDIT_HOOKS``); what each patches, and the
``audit.api`` it records, is in each module's docstring and in the README's "What is audited" table.
"""

from __future__ import annotations

import importlib

from otel_audit.hooks._base import AccessPoint


def load_access_point(name: str) -> AccessPoint:
    """The access point for hook ``name`` (``open``, ``pandas``, ...); imports only our module, not the library."""
    return importlib.import_module(f"otel_audit.hooks.{name}_hook").ACCESS_POINT
