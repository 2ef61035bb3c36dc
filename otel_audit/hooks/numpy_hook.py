"""NumPy: the functions that read or write a named file, recorded as the numpy call.

Without this hook the same accesses show only as ``builtins.open`` (numpy opens
through Python); with it, the ``open`` inside is folded into the numpy call's
record.  ``save``/``savez``/``savez_compressed`` record the file name numpy actually
writes (``.npy``/``.npz`` appended as numpy appends it).  A file object argument is
not recorded here (its ``open`` was).  ``ndarray.tofile`` and ``numpy.memmap`` cannot
be patched (a method of a C type, a class) and stay recorded as ``builtins.open``.
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

READ, WRITE = schema.ACTION_READ, schema.ACTION_WRITE

FUNCTIONS = {
    "load": FileArgument(READ, 0, "file"),
    "save": FileArgument(WRITE, 0, "file", ".npy"),
    "savez": FileArgument(WRITE, 0, "file", ".npz"),
    "savez_compressed": FileArgument(WRITE, 0, "file", ".npz"),
    "loadtxt": FileArgument(READ, 0, "fname"),
    "savetxt": FileArgument(WRITE, 0, "fname"),
    "genfromtxt": FileArgument(READ, 0, "fname"),
    "fromfile": FileArgument(READ, 0, "file"),
}

ACCESS_POINT = file_functions_access_point("numpy", {"numpy": FUNCTIONS}, schema.TYPE_DATA)
