"""The write-ahead spool: audit records on local disk before the audited call returns.

Layout: ``<spool dir>/<service>/<pid>-<random>.seg``, one append-only segment
per writing process.  Each record is one frame::

    magic b"\\xa7\\x01" | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload

so a torn or corrupted tail (power cut, disk full) is detected, reported with
its offset and size, and every intact frame before and after it is still read
(the reader resynchronises on the next valid frame).

A writer holds an exclusive ``flock`` on its segment for its whole life; the
kernel drops it when the process ends, however it ends (``SIGKILL`` and
``os._exit`` included).  A segment nobody holds is an orphan: another process
of the same service, or ``otel-audit flush``, takes the lock and delivers it,
so two processes never deliver one segment at once.  Delivery progress is
``<segment>.ack``: per exporter, the byte offset it acknowledged so far
(replaced atomically), so a retry after one exporter failed resends only to
that one.  A fully delivered orphan is deleted.  ``<segment>.dest`` names the
destinations its writer was configured with (exporter and endpoint or file):
the records are owed to those, and an orphan is delivered only where it is owed
(``otel-audit flush`` from a shell configured for elsewhere says so, and leaves
them).

Records are copied into a shared memory mapping of the segment (:mod:`otel_audit.delivery.mapped`):
in the page cache, as a written record is, with no system call per record.  The file is grown
ahead of the records with ``posix_fallocate``, :data:`GROWTH` at a time, so a live segment ends in
zeros that are not yet records; readers stop at them (a segment whose writer was killed keeps
them), and a segment is cut to its records when it is closed.  Where files cannot be mapped, each
record is one ``os.pwrite``.

Only this user's files are trusted (:mod:`otel_audit.delivery.ownfiles`):
the service directory must be this user's and writable by nobody else, every
file is created ``0600``, a segment another uid owns is never delivered, and
the segment descriptor is verified before each write, so a program that
closes descriptors it did not open (``os.closerange``) and reuses the numbers
never gets audit frames written into its own files.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

from otel_audit import diagnostics
from otel_audit.delivery import mapped, ownfiles

MAGIC = b"\xa7\x01"
_HEADER = struct.Struct("<2sII")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 16 * 1024 * 1024  # a larger length field is corruption, not a record
MAX_SEGMENT_BYTES = 16 * 1024 * 1024  # a segment is closed (and can be delivered and deleted) at this size
GROWTH = 64 * 1024  # a mapped segment's file is grown (blocks allocated) this much ahead of its records
SEGMENT_SUFFIX = ".seg"
CREATING_SUFFIX = ".new"  # ".<segment name>.new": a segment being created, renamed once locked
ABANDONED_CREATION_SECONDS = 60.0  # a creation still unrenamed after this long was abandoned
ACK_SUFFIX = ".ack"
DEST_SUFFIX = ".dest"  # the destinations the segment's records are owed to
SIDECARS = (ACK_SUFFIX, DEST_SUFFIX)


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass
class Damage:
    """Bytes of a segment that are not intact records."""

    path: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.size} damaged bytes at offset {self.offset} of {self.path}"


@dataclass
class Frame:
    offset: int  # where the frame starts
    end: int  # where the next one starts
    payload: bytes


def read_frames(path: str, start: int = 0, *, complete_only: bool = False, stop: int | None = None
                ) -> Iterator[Frame | Damage]:
    """Frames from ``start`` on (to ``stop``, the writer's end when it is this process), and a :class:`Damage`
    for every stretch that is not one.  The zeros a mapped segment's file is grown by ahead of its
    records are not records: reading ends at them.

    ``complete_only``: a segment still being written may end in half a frame;
    stop there instead of calling it damage.
    """
    data = _read_file(path, start, stop)
    position, end = 0, len(data)
    bad_from: int | None = None
    while position < end:
        header = data[position:position + HEADER_SIZE]
        if len(header) == HEADER_SIZE:
            magic, length, crc = _HEADER.unpack(header)
            body_end = position + HEADER_SIZE + length
            if magic == MAGIC and length <= MAX_FRAME:
                if body_end <= end:
                    payload = data[position + HEADER_SIZE:body_end]
                    if zlib.crc32(payload) == crc:
                        if bad_from is not None:
                            yield Damage(path, start + bad_from, position - bad_from)
                            bad_from = None
                        yield Frame(start + position, start + body_end, payload)
                        position = body_end
                        continue
                elif complete_only:
                    break  # the writer has not finished this frame yet
        elif complete_only and MAGIC.startswith(header[:2]):
            break  # nor this one's header
        if data[position] == 0 and data.count(0, position) == end - position:
            break  # the space a mapped segment holds ahead of its records: the end of them
        if bad_from is None:
            bad_from = position
        next_magic = data.find(MAGIC, position + 1)
        if next_magic < 0 and complete_only and data.endswith(MAGIC[:1]) and position < end - 1:
            next_magic = end - 1  # half a magic: perhaps the first byte of a frame being written
        position = end if next_magic < 0 else next_magic
    if bad_from is not None:  # damage ends where reading stopped: the end, or an unfinished frame
        yield Damage(path, start + bad_from, position - bad_from)


def _read_file(path: str, start: int = 0, stop: int | None = None) -> bytes:
    # os-level I/O: otel-audit's own reads must never be audited (nor pass through `open` hooks)
    return ownfiles.read_own_file(path, start, stop)


class SegmentWriter:
    """This process's segment: appends framed records under an exclusive flock, copied into a shared mapping
    of the file (one ``os.pwrite`` each where files are not mapped)."""

    def __init__(self, directory: str, fsync: str = "batch", max_segment_bytes: int = MAX_SEGMENT_BYTES, *,
                 mapped: bool = True):
        self.directory = directory
        self.fsync = fsync
        self.max_segment_bytes = max_segment_bytes
        self.mapped = mapped  # False: every record written with os.pwrite
        self._lock = threading.Lock()
        self._own: ownfiles.OwnFd | None = None
        self._mapping: mapped.Mapping | None = None
        self.destinations: list[str] | None = None  # written beside each new segment once known
        self.taken_away = 0  # how often the program closed or reused our descriptor
        self.closed: list[str] = []  # segments this writer closed at their size (orphans to deliver; pruned by the shipper)
        self.path: str | None = None
        self._size = 0  # where the records end (the file may hold reserved zeros after that)
        self._reserved = 0  # how far the file's blocks are allocated (mapped: stores below this only)
        self._dirty = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_parent_segment)

    @property
    def size(self) -> int:
        """Where the open segment's records end (0 with none open)."""
        return self._size

    def extent(self) -> tuple[str | None, int]:
        """The open segment and where its records end, read together."""
        with self._lock:
            return self.path, self._size

    def _open(self) -> int:
        ownfiles.private_directory(self.directory)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SEGMENT_SUFFIX}"
        path = os.path.join(self.directory, name)
        # Created under a name segments() does not list, and named a segment only once locked:
        # an orphan scan must never take (and, finding it empty, delete) a segment whose
        # writer has created but not yet locked it -- the writer would then fill an unlinked file.
        creating = os.path.join(self.directory, f".{name}{CREATING_SUFFIX}")
        own = ownfiles.create_private_file(creating, os.O_RDWR | os.O_EXCL)  # (read too: a shared mapping needs it)
        try:
            fcntl.flock(own.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if self.destinations is not None:  # before the segment is listed: never one without its destinations
                write_destinations(path, self.destinations)
            os.rename(creating, path)
            own.path = path
        except BaseException:
            own.close()
            for name in (creating, path + DEST_SUFFIX):
                try:
                    os.unlink(name)
                except OSError:
                    pass
            raise
        self._own, self.path, self._size, self._reserved = own, path, 0, 0
        self._mapping = mapped.map_file(own.fd, self.max_segment_bytes) if self.mapped else None
        return own.fd

    def _verified_fd(self) -> int | None:
        """This process's segment descriptor, if it is still ours (call with the lock held).  One the
        program closed or reused is dropped without touching it; the next write opens a new segment."""
        own = self._own
        if own is None:
            return None
        fd = own.verified()
        if fd is None:
            diagnostics.report(
                f"the program closed or reused otel-audit's spool descriptor {own.fd} (os.closerange or "
                f"similar): nothing was written through it; records go on in a new segment, and those "
                f"before it are delivered from {own.path}", key="spool-fd-taken")
            self._forget_segment()
            self.taken_away += 1
        return fd

    def set_destinations(self, destinations: list[str]) -> None:
        """Where this writer's records are owed: written beside the open segment (if it has none yet) and
        beside every segment opened from now on."""
        with self._lock:
            self.destinations = list(destinations)
            if self.path is not None and not os.path.exists(self.path + DEST_SUFFIX):
                write_destinations(self.path, self.destinations)

    def check(self) -> int:
        """How often the program has taken our descriptor away so far (verifies it now)."""
        with self._lock:
            self._verified_fd()
            return self.taken_away

    def _forget_segment(self) -> None:
        """No segment open now (closed, taken away, or the parent's after fork): the next write opens one.
        Its mapping goes (a segment whose descriptor was taken keeps its reserved zeros: readers stop there)."""
        mapping = self._mapping
        self._own, self._mapping, self.path, self._size, self._reserved, self._dirty = None, None, None, 0, 0, False
        if mapping is not None:
            mapping.close()

    def ensure_open(self) -> None:
        """Open this process's segment now if it is not (raises ``OSError`` if the spool is unwritable)."""
        with self._lock:
            if self._verified_fd() is None:
                self._open()

    def _forget_parent_segment(self) -> None:
        # The child shares the parent's open file (and its flock): closing our copy
        # releases nothing of the parent's, nor does unmapping the child's copy of the mapping.
        # The child writes a segment of its own.
        self._lock = threading.Lock()
        self.closed = []  # (the parent's to deliver)
        if self._own is not None:
            try:
                self._own.close()
            except OSError:
                pass
        self._forget_segment()

    def append(self, payload: bytes, room: int = GROWTH) -> None:
        """Raises ``OSError`` when the record could not be written (the caller decides open/closed).
        ``room``: how many bytes beyond this record the file may be grown by ahead of the next ones
        (what the spool's cap leaves)."""
        data = frame(payload)
        with self._lock:
            start = self._size
            end = start + len(data)
            if end <= self._reserved:  # the common case: a copy into the page cache, no system call
                self._mapping.view[start:end] = data
            else:
                end = self._append_growing(data, start, end, room)
            self._size = end
            if self.fsync == "always":
                fd = self._verified_fd()
                if fd is not None:
                    os.fsync(fd)
            else:
                self._dirty = True
            if end >= self.max_segment_bytes:
                self._close()

    def _append_growing(self, data: bytes, start: int, end: int, room: int) -> int:
        """The record where the file must be grown first (or a new segment opened, or it is not mapped):
        where it ends."""
        fd = self._verified_fd()
        if fd is None:
            fd = self._open()
            start, end = 0, len(data)
        mapping = self._mapping
        if mapping is not None and end <= mapping.length:
            # blocks allocated before any store: a full disk is an OSError here, never a SIGBUS later
            reserve_to = min(mapping.length, max(end, min(self._reserved + GROWTH, end + max(room, 0))))
            os.posix_fallocate(fd, self._reserved, reserve_to - self._reserved)
            self._reserved = reserve_to
            mapping.view[start:end] = data
            return end
        # not mapped, or the record that crosses the segment's size (beyond its mapping): written
        written = os.pwrite(fd, data, start)
        if written != len(data):  # disk full mid-frame: the checksum marks the tail as damage
            self._size = start + written
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        return end

    def _close(self) -> None:
        # A full segment is closed, which drops its flock: it becomes an orphan that any shipper
        # (this process's included) delivers and then deletes, so a long-running process's spool
        # does not grow without bound.  The next record opens a new segment.
        fd = self._verified_fd()
        if fd is not None:
            self._trim(fd)
            if self.fsync != "never" and self._dirty:
                os.fsync(fd)
            self._own.close()
        if self.path is not None:
            self.closed.append(self.path)
        self._forget_segment()

    def _trim(self, fd: int) -> None:
        """Cut the zeros reserved ahead of the records off the file (they are disk space, and nobody's)."""
        if self._reserved > self._size:
            os.ftruncate(fd, self._size)
            self._reserved = self._size

    def trim(self) -> None:
        """At exit: the open segment's file cut to its records (later records grow it again)."""
        with self._lock:
            fd = self._verified_fd()
            if fd is not None:
                self._trim(fd)

    def sync(self) -> None:
        """``fsync`` what was appended since the last sync (the ``batch`` policy calls this per shipment).
        On Linux ``fsync`` writes back a file's pages however they were changed, mapped ones included."""
        with self._lock:
            if self._dirty and self.fsync != "never":
                fd = self._verified_fd()
                if fd is not None:
                    os.fsync(fd)
                self._dirty = False

    def close_if(self, path: str, delivered: Callable[[], bool]) -> bool:
        """At exit: if ``path`` is still this writer's segment and ``delivered()`` says every exporter
        acknowledged all of it, delete it (and its acknowledgements) and close it.  A record written
        later opens a new segment.  Returns whether it was deleted."""
        with self._lock:
            fd = self._verified_fd()
            if fd is None or self.path != path or not delivered():
                return False
            remove_segment(path)
            self._own.close()
            self._forget_segment()
            return True


def read_ack(segment: str) -> dict[str, int]:
    """Acknowledged byte offset of ``segment`` per exporter name ({} when nothing was acknowledged)."""
    try:
        acks = json.loads(_read_file(segment + ACK_SUFFIX))
    except (OSError, ValueError):
        return {}
    if not isinstance(acks, dict):
        return {}
    return {str(k): v for k, v in acks.items() if type(v) is int and v >= 0}


def _replace_sidecar(segment: str, suffix: str, value: object) -> None:
    """Replace ``<segment><suffix>`` atomically (a crash leaves the old or the new, never half)."""
    temporary = f"{segment}{suffix}.{os.getpid()}.{threading.get_ident()}.tmp"
    own = ownfiles.create_private_file(temporary, os.O_WRONLY | os.O_TRUNC)
    try:
        ownfiles.write_all(own, json.dumps(value, sort_keys=True).encode())
    finally:
        own.close()
    os.replace(temporary, segment + suffix)


def write_ack(segment: str, acks: dict[str, int]) -> None:
    """Replace the acknowledged offsets atomically."""
    _replace_sidecar(segment, ACK_SUFFIX, acks)


def write_destinations(segment: str, destinations: list[str]) -> None:
    _replace_sidecar(segment, DEST_SUFFIX, sorted(destinations))


def read_destinations(segment: str) -> list[str] | None:
    """The destinations ``segment``'s records are owed to; ``None`` when it has no record of them (written
    by an otel-audit before 0.2, or its writer was killed before its exporters were known)."""
    try:
        value = json.loads(_read_file(segment + DEST_SUFFIX))
    except (OSError, ValueError):
        return None
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        return None
    return value


def remove_segment(path: str) -> None:
    """Delete a delivered segment and what is kept beside it."""
    for name in [path + suffix for suffix in SIDECARS] + [path]:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


class ForeignSegment(ownfiles.UntrustedPath):
    """A segment this user does not own: never delivered (whoever owns it could have forged it)."""


class OrphanLock:
    """Exclusive hold on a segment whose writer is gone; ``None`` from :meth:`take` while anyone holds it."""

    def __init__(self, own: ownfiles.OwnFd):
        self._own, self.path = own, own.path

    @classmethod
    def take(cls, path: str) -> "OrphanLock | None":
        """Raises :class:`ForeignSegment` for a segment another user owns (or that is no regular file)."""
        try:
            own = ownfiles.OwnFd(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK), path)
        except OSError:
            return None
        try:
            info = os.fstat(own.fd)
            if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
                raise ForeignSegment(f"{path} is owned by uid {info.st_uid}, not by this user "
                                     f"(uid {os.geteuid()}), or is no regular file")
            fcntl.flock(own.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ForeignSegment:
            own.close()
            raise
        except OSError:  # held by its writer or another deliverer
            own.close()
            return None
        return cls(own)

    def release(self, *, delete: bool) -> None:
        if delete:
            remove_segment(self.path)
        self._own.close()  # drops the flock (unless the program took the descriptor, which dropped it already)


def remove_abandoned_creations(directory: str) -> int:
    """Delete the hidden files of segment creations whose writer died between creating and
    renaming (``SIGKILL`` at that instant).  Such a file is always empty: a writer writes only
    once it has renamed.  Only files that are empty, older than a minute and not locked are
    removed, so a creation in progress is never touched.  Returns how many were removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(".") and name.endswith(SEGMENT_SUFFIX + CREATING_SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            own = ownfiles.OwnFd(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), path)
        except OSError:
            continue
        try:
            info = os.fstat(own.fd)
            if info.st_size or time.time() - info.st_mtime < ABANDONED_CREATION_SECONDS:
                continue
            fcntl.flock(own.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its writer is alive
            os.unlink(path)
            removed += 1
        except OSError:
            continue
        finally:
            own.close()
    return removed


def segments(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:  # not there (yet), or not a directory: no segments to deliver
        return []
    return sorted(os.path.join(directory, n) for n in names if n.endswith(SEGMENT_SUFFIX))
