"""NumPy: the functions that read or write a named file, recorded as the numpy call.

Without this hook the same accesses show only as ``builtins.open`` (numpy opens
through Python); with it, the ``open`` inside is folded into the numpy call's
record.  ``save``/``savez``/``savez_compressed`` record the file name numpy actually
writes (``.npy``/``.npz`` appended as numpy appends it).  A file object argument is
not recorded here (its ``open`` was).  ``numpy.memmap`` is recorded when made, its
action from its mode (``r`` and ``c`` read; ``r+``, the default, and ``w+`` write); it stays
usable as the class it is (``isinstance``; ``type(a) is np.memmap`` no longer holds).
``ndarray.tofile`` (a method of numpy's immutable C type, set on it as ``_base`` describes)
is recorded as ``numpy.ndarray.tofile``.
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
    # a class: making one maps the file; the action from its mode (default r+: read-write)
    "memmap": FileArgument(READ, 0, "filename", mode=(2, "mode", "r+")),
}

ACCESS_POINT = file_functions_access_point("numpy", {
    "numpy": FUNCTIONS,
    "numpy:ndarray": {"tofile": FileArgument(WRITE, 0, "fid")},
}, schema.TYPE_DATA)
