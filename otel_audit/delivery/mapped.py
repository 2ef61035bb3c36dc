"""A segment file mapped into memory (``MAP_SHARED``): spool records written without a system call.

A record copied into a shared mapping of the segment is in the kernel's page cache the moment the
copy ends, exactly where an ``os.write`` would have put it: it survives the process being killed
(``SIGKILL``, ``os._exit``, a crash) as a written record does, and ``fsync`` on the file makes it
survive power loss as it does for written ones.  What it saves is the system call per record (and
the descriptor check before it), and the GIL released and taken again around it, which made
threads writing records queue behind each other.

Two rules keep it as safe as writing:

* **Space is reserved before it is used.**  A store into a page beyond the end of the file, or one
  the file system cannot find a block for (a full disk), kills the process with ``SIGBUS``.  So the
  file is grown with ``posix_fallocate`` ahead of the records, a chunk at a time, through the
  checked descriptor; when that fails (the disk is full, a size limit) it fails as a write does, with
  ``OSError`` and nothing written.  Only the bytes below what was reserved are ever stored to.
* **No hidden descriptor.**  Python's ``mmap.mmap`` keeps a duplicate of the descriptor it maps and
  closes it when the mapping is closed.  A program that closes descriptors it did not open
  (``os.closerange``) and reuses the numbers would get that close on one of its own files.  So the
  mapping is made with the C library's ``mmap`` (through ``ctypes``), which keeps no descriptor: the
  segment's own checked descriptor is the only one.

Only on Linux with CPython's ``ctypes``; elsewhere (or where a file system refuses shared mappings)
:func:`map_file` returns ``None`` and the segment is written with ``os.pwrite``, as before.
"""

from __future__ import annotations

import sys

_libc = None
_unavailable = not sys.platform.startswith("linux")


def _c_library():
    global _libc, _unavailable
    if _libc is None and not _unavailable:
        try:
            import ctypes  # at the first segment, not at start-up

            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long)
            libc.munmap.restype = ctypes.c_int
            libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
            _libc = (ctypes, libc)
        except Exception:  # no ctypes, no C library symbols: segments are written
            _unavailable = True
    return _libc


class Mapping:
    """``length`` bytes of a file mapped shared, as a writable ``memoryview`` (:attr:`view`).

    Stores go only below what the file holds (see the module's rules); :meth:`close` unmaps, after
    which the view is released and must not be used (the owner drops it under its lock)."""

    __slots__ = ("view", "length", "_address", "_unmap")

    def __init__(self, view: memoryview, length: int, address: int, unmap):
        self.view, self.length, self._address, self._unmap = view, length, address, unmap

    def close(self) -> None:
        view, self.view = self.view, None
        if view is not None:
            view.release()
            self._unmap(self._address, self.length)


def map_file(fd: int, length: int) -> Mapping | None:
    """A shared read-write mapping of ``length`` bytes of the file open on ``fd`` (read-write), which
    may be shorter than that for now; ``None`` where files are not mapped here."""
    loaded = _c_library()
    if loaded is None or length <= 0:
        return None
    import mmap

    ctypes, libc = loaded
    address = libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if address is None or address == ctypes.c_void_p(-1).value:  # MAP_FAILED: the file system refuses
        return None
    try:
        view = memoryview((ctypes.c_char * length).from_address(address)).cast("B")
    except BaseException:
        libc.munmap(address, length)
        raise
    return Mapping(view, length, address, libc.munmap)

