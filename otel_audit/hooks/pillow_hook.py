"""Pillow: ``PIL.Image.open`` and ``Image.save``, recorded as those calls (type ``data``).

Pillow opens files through Python's ``open``; with this hook that ``open`` is folded into
the record of the call the user made.  An open file object or a buffer is not recorded
here (its own ``open`` was).
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

MODULES = {
    "PIL.Image": {"open": FileArgument(schema.ACTION_READ, 0, "fp")},
    "PIL.Image:Image": {"save": FileArgument(schema.ACTION_WRITE, 0, "fp")},
}

ACCESS_POINT = file_functions_access_point("pillow", MODULES, schema.TYPE_DATA)
