"""safetensors: every function that opens a ``.safetensors`` file, resource type ``model``.

safetensors reads and writes in Rust (``open`` never runs), so only this hook sees
these accesses.  ``load_file``/``load_model`` inside call ``safe_open``: one record,
for the call the user made.  ``load``/``save`` work on bytes in memory: no file, no
record (the ``open`` that read or wrote those bytes has its own).
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

READ, WRITE = schema.ACTION_READ, schema.ACTION_WRITE

# framework modules safetensors ships: the same two file functions in each
FRAMEWORK_FUNCTIONS = {
    "load_file": FileArgument(READ, 0, "filename"),
    "save_file": FileArgument(WRITE, 1, "filename"),
}

MODULES = {
    # a class: calling it (also as a context manager, ``with safe_open(...) as f``) opens the file
    "safetensors": {"safe_open": FileArgument(READ, 0, "filename")},
    "safetensors.torch": {
        **FRAMEWORK_FUNCTIONS,
        "load_model": FileArgument(READ, 1, "filename"),
        "save_model": FileArgument(WRITE, 1, "filename"),
    },
    "safetensors.numpy": FRAMEWORK_FUNCTIONS,
    "safetensors.flax": FRAMEWORK_FUNCTIONS,
    "safetensors.tensorflow": FRAMEWORK_FUNCTIONS,
    "safetensors.paddle": FRAMEWORK_FUNCTIONS,
    "safetensors.mlx": FRAMEWORK_FUNCTIONS,
}

ACCESS_POINT = file_functions_access_point("safetensors", MODULES, schema.TYPE_MODEL)
