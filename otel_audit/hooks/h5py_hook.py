"""h5py: ``h5py.File`` (the HDF5 library opens the file in C: ``open`` never runs).

The action comes from the mode: ``r`` (the default) is a read; ``r+``, ``w``, ``w-``,
``x`` and ``a`` are writes.  A file object or an in-memory driver's name that is not a
path is not recorded.  What is read from the datasets afterwards is part of this
record: HDF5 reads lazily, through the open file.
"""

from __future__ import annotations

from otel_audit import schema
from otel_audit.hooks._base import FileArgument, file_functions_access_point

MODULES = {"h5py": {"File": FileArgument(schema.ACTION_READ, 0, "name", mode=(1, "mode", "r"))}}

ACCESS_POINT = file_functions_access_point("h5py", MODULES, schema.TYPE_DATA)
