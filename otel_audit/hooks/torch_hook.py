"""PyTorch: ``torch.load`` (read) and ``torch.save`` (write), resource type ``model``.

``torch.save`` to a path writes through C++, not ``open``, so only this hook
sees it.  A buffer argument keeps working and is not recorded.
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import file_functions_access_point

# function -> (action, position and name of the file argument)
FUNCTIONS = {
    "load": (schema.ACTION_READ, 0, "f"),
    "save": (schema.ACTION_WRITE, 1, "f"),
}

ACCESS_POINT = file_functions_access_point("torch", {"torch": FUNCTIONS}, schema.TYPE_MODEL)
