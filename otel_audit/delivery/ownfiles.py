"""otel-audit's own files: created owner-only, trusted only when they are ours, written only while ours.

Audit data names sensitive resources and must not be forgeable, so every file
and directory otel-audit creates (the spool, acknowledgements, the
``audit_file`` trail) goes through here:

* **Owner-only, whatever the umask.** Directories are created ``0700`` and
  files ``0600``, and the mode is set again after creation (a umask of ``000``
  or ``077`` changes nothing).
* **Trusted only when ours.** :func:`private_directory` refuses a directory
  another user owns, one others can write to (a world-writable parent is
  accepted only with the sticky bit, as ``/tmp``), and a symbolic link in
  place of the directory: whoever can write there could plant or delete
  records.  A directory of ours that others can write to is tightened, and
  that is said.
* **Written only while ours.** A program may close descriptors it did not
  open (``os.closerange``, daemonizing) and reuse their numbers for its own
  files.  :class:`OwnFd` remembers the device and inode a descriptor was opened
  on, and :meth:`OwnFd.verified` checks them (one ``fstat``) immediately before
  every use, so otel-audit never writes into, syncs, or closes a descriptor that
  has become the program's.  (Between that ``fstat`` and the next system call
  another thread could still close and reuse the number; POSIX offers no way
  to close that window, only to make it this narrow.)

Everything here uses ``os``-level calls: otel-audit's own I/O never passes
through the ``open`` it audits.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import stat
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, ModuleType

from otel_audit import diagnostics

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


class UntrustedPath(PermissionError):
    """A file or directory otel-audit will not use: another user's, writable by others, or a link."""


def _uid() -> int:
    return os.geteuid()


def _describe_owner(info: os.stat_result) -> str:
    return f"owned by uid {info.st_uid}, not by this user (uid {_uid()})"


def make_private_directories(path: str) -> None:
    """Create ``path`` and its missing parents, each ``0700`` whatever the umask (existing ones are left)."""
    missing = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIRECTORY_MODE)
        except FileExistsError:  # another process of the service was quicker
            continue
        os.chmod(directory, DIRECTORY_MODE, follow_symlinks=False)


def _tighten(path: str, info: os.stat_result) -> None:
    os.chmod(path, DIRECTORY_MODE, follow_symlinks=False)
    diagnostics.report(f"{path} was writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                       f"tightened to {DIRECTORY_MODE:04o}", key=f"tightened:{path}")


def _check_parent(parent: str) -> None:
    """Whoever can rename entries in ``parent`` can swap our directory for one of theirs: it must be
    this user's (tightened if others can write to it) or root's (and then, if others can write to it,
    sticky, as ``/tmp``)."""
    info = os.stat(parent)
    others_write = info.st_mode & _OTHERS_WRITE and not info.st_mode & stat.S_ISVTX
    if info.st_uid == _uid():
        if others_write:
            _tighten(parent, info)
    elif info.st_uid != 0:
        raise UntrustedPath(f"{parent} is owned by uid {info.st_uid}, neither this user (uid {_uid()}) nor root")
    elif others_write:
        raise UntrustedPath(f"{parent} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}, "
                            "no sticky bit)")


def private_directory(path: str, *, create: bool = True) -> str:
    """``path`` as a directory only this user can change: created ``0700`` if missing (``create``),
    tightened if ours and writable by others, its parent checked likewise.  Raises
    :class:`UntrustedPath` (an ``OSError``) if it is not ours to trust, another ``OSError`` if it
    cannot be created (or, without ``create``, does not exist)."""
    if create:
        make_private_directories(path)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UntrustedPath(f"{path} is a symbolic link, not a directory of this user's")
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
    if info.st_uid != _uid():
        raise UntrustedPath(f"{path} is {_describe_owner(info)}: its owner could plant or delete audit records")
    if info.st_mode & _OTHERS_WRITE:
        _tighten(path, info)
    _check_parent(os.path.dirname(path) or ".")
    return path


class OwnFd:
    """A descriptor otel-audit opened, and the file (device, inode) it was opened on."""

    __slots__ = ("fd", "path", "_identity")

    def __init__(self, fd: int, path: str):
        info = os.fstat(fd)
        self.fd, self.path, self._identity = fd, path, (info.st_dev, info.st_ino)

    def verified(self) -> int | None:
        """The descriptor, if it still refers to the file it was opened on; ``None`` if the program
        closed it or reused its number (then it is the program's: never write, sync or close it)."""
        try:
            info = os.fstat(self.fd)
        except OSError:
            return None
        return self.fd if (info.st_dev, info.st_ino) == self._identity else None

    def close(self) -> bool:
        """Close it if it is still ours; False if it was taken away (then nothing is closed)."""
        fd = self.verified()
        if fd is None:
            return False
        os.close(fd)
        return True


def create_private_file(path: str, flags: int) -> OwnFd:
    """``os.open(path, flags | O_CREAT)``, created ``0600`` whatever the umask, never through a link."""
    fd = os.open(path, flags | os.O_CREAT | _OPEN_FLAGS, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return OwnFd(fd, path)
    except BaseException:
        os.close(fd)
        raise


def open_private_append(path: str) -> tuple[OwnFd, str | None]:
    """Open ``path`` to append (and read: created ``0600`` if missing).  It must be a regular file of this user's,
    not a link; one of ours readable or writable by others is tightened to ``0600``, and the second value
    says so.  Raises :class:`UntrustedPath` or ``OSError``."""
    # O_NONBLOCK: a FIFO planted at the path must not hang the program (it is refused below)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _OPEN_FLAGS, FILE_MODE)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedPath(f"{path} is not a regular file")
        if info.st_uid != _uid():
            raise UntrustedPath(f"{path} is {_describe_owner(info)}: audit records are not written into "
                                "another user's file")
        tightened = None
        mode = stat.S_IMODE(info.st_mode)
        if mode != FILE_MODE:  # others' bits (said), or owner bits a umask took from a new file (silently)
            os.fchmod(fd, FILE_MODE)
            if mode & ~FILE_MODE:
                tightened = f"{path} was mode {mode:04o}; tightened to {FILE_MODE:04o} (audit data is owner-only)"
        os.set_blocking(fd, True)
        return OwnFd(fd, path), tightened
    except BaseException:
        os.close(fd)
        raise


def write_all(own: OwnFd, data: bytes) -> None:
    """Write ``data`` through ``own``, verified first; ``OSError`` if it is no longer ours or the write fell short."""
    fd = own.verified()
    if fd is None:
        raise OSError(errno.EBADF, "otel-audit's descriptor was closed or reused by the program", own.path)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write", own.path)
        view = view[written:]


def read_own_file(path: str, start: int = 0, stop: int | None = None) -> bytes:
    """The bytes of ``path`` from ``start`` (to ``stop``), read through a descriptor checked to still be the
    file opened (so a descriptor swapped mid-read never yields another file's bytes)."""
    own = OwnFd(os.open(path, os.O_RDONLY | os.O_CLOEXEC), path)
    try:
        os.lseek(own.fd, start, os.SEEK_SET)
        chunks = []
        left = float("inf") if stop is None else stop - start
        while left > 0 and (chunk := os.read(own.fd, int(min(1 << 20, left)))):
            chunks.append(chunk)
            left -= len(chunk)
        if own.verified() is None:
            raise OSError(errno.EBADF, "otel-audit's descriptor was closed or reused while reading", path)
        return b"".join(chunks)
    finally:
        own.close()


_NOT_HOLDING_SOCKETS = (type, ModuleType, FunctionType, BuiltinFunctionType, CodeType, FrameType, str, bytes,
                        int, float, bool, type(None))
_MAX_OBJECTS = 50_000


def forget_sockets(roots) -> int:
    """Make every socket reachable from ``roots`` forget its descriptor without closing it.

    For exporters abandoned because the program closed descriptors it did not open: the numbers their
    pooled connections hold may be the program's files now, and closing a socket (explicitly, when a
    connection looks dropped, by garbage collection or by an exit-time finalizer) would close the
    program's file.  ``socket.detach()`` leaves the number alone.  Returns how many were detached."""
    seen: set[int] = set()
    stack = list(roots)
    detached = 0
    while stack and len(seen) < _MAX_OBJECTS:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_HOLDING_SOCKETS):
            continue
        seen.add(id(obj))
        if isinstance(obj, socket.socket):
            if obj.fileno() >= 0:
                obj.detach()
                detached += 1
            continue
        stack.extend(gc.get_referents(obj))
    return detached
