"""joblib: ``joblib.load`` (read) and ``joblib.dump`` (write), resource type ``model``.

A file object argument keeps working and is not recorded.
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import file_functions_access_point

# function -> (action, position and name of the file argument)
FUNCTIONS = {
    "load": (schema.ACTION_READ, 0, "filename"),
    "dump": (schema.ACTION_WRITE, 1, "filename"),
}

ACCESS_POINT = file_functions_access_point("joblib", {"joblib": FUNCTIONS}, schema.TYPE_MODEL)
