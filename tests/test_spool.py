"""The write-ahead spool (otel_audit.delivery.spool): frames on disk, damage found and bounded, segment ownership.

Everything here runs on real files, real ``flock`` locks and real processes
(threads, ``os.fork``, multiprocessing fork and spawn, ``SIGKILL``).
Payloads are ASCII so that the frame magic ``\\xa7\\x01`` never occurs inside
one: each test that resynchronises asserts that premise first.
"""

from __future__ import annotations

import collections
import fcntl
import json
import multiprocessing
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import threading
import traceback
import zlib
from pathlib import Path

import pytest

from otel_audit.delivery import spool
from otel_audit.delivery.spool import (
    ACK_SUFFIX, HEADER_SIZE, MAGIC, MAX_FRAME, Damage, Frame, OrphanLock, SegmentWriter,
    read_ack, read_frames, segments, write_ack,
)

# `python -c` children run here, so they import the very otel_audit this test process imported
CHILD_CWD = Path(spool.__file__).resolve().parent.parent


# -- helpers ----------------------------------------------------------------------

def make_payloads(n: int, tag: str = "rec") -> list[bytes]:
    # distinct, varying lengths (incl. one empty payload when n > 0)
    return [b"" if i == 0 else f"{tag}-{i:05d}:".encode() + b"x" * (i % 13) for i in range(n)]


def layout(payloads: list[bytes]) -> list[tuple[int, int]]:
    """(offset, end) of each payload's frame in a segment written from empty."""
    spans, offset = [], 0
    for payload in payloads:
        end = offset + HEADER_SIZE + len(payload)
        spans.append((offset, end))
        offset = end
    return spans


def write_segment(directory: Path, payloads: list[bytes]) -> str:
    writer = SegmentWriter(str(directory))
    for payload in payloads:
        writer.append(payload)
    assert writer.path is not None
    writer.trim()  # the file as a writer leaves it at exit: its records, not the space reserved after them
    return writer.path


def expected_frames(payloads: list[bytes], spans: list[tuple[int, int]], shift: int = 0) -> list[Frame]:
    return [Frame(o + shift, e + shift, p) for p, (o, e) in zip(payloads, spans)]


def contents(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def rewrite(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def only_frames(items) -> list[Frame]:
    items = list(items)
    assert not [i for i in items if isinstance(i, Damage)], items
    return items


def payloads_in(path: str) -> list[bytes]:
    return [f.payload for f in only_frames(read_frames(path))]


def take_in_other_process(path: str) -> str:
    """``OrphanLock.take(path)`` in a fresh interpreter: "held" (None) or "taken"."""
    code = ("import sys\nfrom otel_audit.delivery.spool import OrphanLock\n"
            "print('held' if OrphanLock.take(sys.argv[1]) is None else 'taken')")
    done = subprocess.run([sys.executable, "-c", code, path], cwd=CHILD_CWD, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def run_forked(child) -> str:
    """Run ``child()`` in an ``os.fork`` child; return what it returned (a str), re-raising its failure here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            message = "ok:" + child()
            status = 0
        except BaseException:
            message = "error:" + traceback.format_exc()
        try:
            os.write(write_end, message.encode())
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    message = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(wait_status) == 0, message
    assert message.startswith("ok:"), message
    return message[3:]


# -- the frame format ---------------------------------------------------------------

def test_frame_bytes_on_disk():
    payload = b"hello spool"
    assert HEADER_SIZE == 10
    assert spool.frame(payload) == (
        b"\xa7\x01" + len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload)
    assert spool.frame(b"") == b"\xa7\x01" + bytes(4) + bytes(4)


def test_appended_frames_read_back_in_order_with_their_offsets(tmp_path):
    payloads = make_payloads(50)
    path = write_segment(tmp_path / "svc", payloads)
    spans = layout(payloads)
    data = contents(path)
    assert len(data) == spans[-1][1] == sum(HEADER_SIZE + len(p) for p in payloads)
    assert data == b"".join(spool.frame(p) for p in payloads)

    frames = list(read_frames(path))
    assert frames == expected_frames(payloads, spans)
    assert list(read_frames(path, complete_only=True)) == frames
    # contiguous: each frame ends where the next starts
    assert all(a.end == b.offset for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("k", [0, 1, 17, 49])
def test_reading_resumes_exactly_at_an_ack_offset(tmp_path, k):
    payloads = make_payloads(50)
    path = write_segment(tmp_path, payloads)
    spans = layout(payloads)

    write_ack(path, {"otlp": spans[k][0]})
    assert read_ack(path) == {"otlp": spans[k][0]}
    resumed = list(read_frames(path, start=read_ack(path)["otlp"]))
    assert resumed == expected_frames(payloads, spans)[k:]  # offsets stay absolute
    assert resumed[0].offset == spans[k][0]


def test_reading_from_the_end_yields_nothing(tmp_path):
    payloads = make_payloads(5)
    path = write_segment(tmp_path, payloads)
    end = layout(payloads)[-1][1]
    assert list(read_frames(path, start=end)) == []
    assert list(read_frames(path, start=end, complete_only=True)) == []


# -- a torn tail -------------------------------------------------------------------

@pytest.mark.parametrize("kept", [1, 2, 5, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, "all but one"])
def test_torn_tail(tmp_path, kept):
    payloads = make_payloads(8)
    payloads[-1] = b"the last record, torn by a power cut"
    path = write_segment(tmp_path, payloads)
    spans = layout(payloads)
    last_offset, last_end = spans[-1]
    kept = last_end - last_offset - 1 if kept == "all but one" else kept
    os.truncate(path, last_offset + kept)
    # premise: no magic inside the torn bytes (one byte kept is half the magic)
    assert contents(path).count(MAGIC) == len(payloads) - (kept < 2)

    intact = expected_frames(payloads, spans)[:-1]
    assert list(read_frames(path)) == intact + [Damage(path, last_offset, kept)]
    # a writer may still be writing that frame: not damage (yet)
    assert list(read_frames(path, complete_only=True)) == intact
    # and resuming at the torn frame
    assert list(read_frames(path, start=last_offset)) == [Damage(path, last_offset, kept)]
    assert list(read_frames(path, start=last_offset, complete_only=True)) == []


def test_a_torn_tail_completed_later_reads_as_a_frame(tmp_path):
    payloads = make_payloads(4)
    path = write_segment(tmp_path, payloads[:3])
    with open(path, "ab") as f:  # a writer halfway through its write
        f.write(spool.frame(payloads[3])[:HEADER_SIZE + 3])
    assert list(read_frames(path, complete_only=True)) == expected_frames(payloads, layout(payloads))[:3]
    with open(path, "ab") as f:
        f.write(spool.frame(payloads[3])[HEADER_SIZE + 3:])
    assert list(read_frames(path, complete_only=True)) == expected_frames(payloads, layout(payloads))


# -- corruption in the middle -------------------------------------------------------

def _segment_with_k(tmp_path, n=12):
    payloads = make_payloads(n)
    path = write_segment(tmp_path, payloads)
    data = bytearray(contents(path))
    assert data.count(MAGIC) == n  # premise: the reader can only resynchronise on real frame starts
    return payloads, layout(payloads), path, data


# byte positions inside frame k (relative to its start; negative: from its end)
FLIPS = {
    "magic[0]": 0, "magic[1]": 1, "length": 2, "crc[0]": 6, "crc[3]": 9,
    "payload first": HEADER_SIZE, "payload middle": "middle", "payload last": -1,
}


@pytest.mark.parametrize("where", list(FLIPS))
@pytest.mark.parametrize("complete_only", [False, True])
def test_a_flipped_byte_damages_exactly_its_frame(tmp_path, where, complete_only):
    payloads, spans, path, data = _segment_with_k(tmp_path)
    k = 6
    offset, end = spans[k]
    position = FLIPS[where]
    position = (offset + end) // 2 if position == "middle" else (end + position if position < 0 else offset + position)
    if where == "length":  # one byte longer: its "payload" would take the next frame's first byte
        struct.pack_into("<I", data, position, len(payloads[k]) + 1)
    else:
        data[position] ^= 0xFF
    rewrite(path, bytes(data))

    frames = expected_frames(payloads, spans)
    assert list(read_frames(path, complete_only=complete_only)) == (
        frames[:k] + [Damage(path, offset, end - offset)] + frames[k + 1:])
    # resuming at the damaged frame reports it at its absolute offset
    assert list(read_frames(path, start=offset, complete_only=complete_only)) == (
        [Damage(path, offset, end - offset)] + frames[k + 1:])


@pytest.mark.parametrize("length", [0xFFFFFFFF, MAX_FRAME + 1])
@pytest.mark.parametrize("k", [0, 5, 11])  # first, middle, last frame
@pytest.mark.parametrize("complete_only", [False, True])
def test_a_bogus_huge_length_is_damage_not_an_unfinished_frame(tmp_path, length, k, complete_only):
    payloads, spans, path, data = _segment_with_k(tmp_path)
    offset, end = spans[k]
    struct.pack_into("<I", data, offset + 2, length)
    rewrite(path, bytes(data))

    frames = expected_frames(payloads, spans)
    # longer than any record may be: corrupt, even in a segment still being written
    assert list(read_frames(path, complete_only=complete_only)) == (
        frames[:k] + [Damage(path, offset, end - offset)] + frames[k + 1:])


GARBAGE = (b"not a frame \xa7"  # a lone half magic
           + MAGIC + b"\xff\xff\xff\xff" + b"\x00" * 4  # magic, impossible length
           + MAGIC + struct.pack("<I", 3) + b"\x00" * 4 + b"abc"  # magic, plausible length, wrong CRC
           + b" trailing junk")


@pytest.mark.parametrize("k", [0, 4, 8])  # before the first frame, between frames, after the last
@pytest.mark.parametrize("complete_only", [False, True])
def test_a_garbage_run_between_frames_is_one_damage(tmp_path, k, complete_only):
    payloads, spans, path, data = _segment_with_k(tmp_path, n=8)
    at = spans[k][0] if k < len(spans) else spans[-1][1]
    rewrite(path, bytes(data[:at]) + GARBAGE + bytes(data[at:]))

    frames = expected_frames(payloads, spans)
    shifted = expected_frames(payloads[k:], spans[k:], shift=len(GARBAGE))
    assert list(read_frames(path, complete_only=complete_only)) == (
        frames[:k] + [Damage(path, at, len(GARBAGE))] + shifted)


@pytest.mark.parametrize("kept", [1, 2, HEADER_SIZE + 2])
def test_damage_before_an_unfinished_frame_ends_where_that_frame_starts(tmp_path, kept):
    """A short write (disk full) left a frame's header only; the next record is being written right now."""
    payloads = make_payloads(3)
    half = spool.frame(b"Z")[:HEADER_SIZE]  # claims one payload byte: the next write's first byte
    in_progress = spool.frame(b"the record being written now")
    path = write_segment(tmp_path, payloads)
    with open(path, "ab") as f:
        f.write(half + in_progress[:kept])
    frames = expected_frames(payloads, layout(payloads))
    damaged_at = layout(payloads)[-1][1]

    # the half frame is damage; the unfinished one is not (yet)
    assert list(read_frames(path, complete_only=True)) == frames + [Damage(path, damaged_at, len(half))]
    assert list(read_frames(path, start=damaged_at, complete_only=True)) == [Damage(path, damaged_at, len(half))]
    assert list(read_frames(path)) == frames + [Damage(path, damaged_at, len(half) + kept)]
    with open(path, "ab") as f:
        f.write(in_progress[kept:])
    finished = Frame(damaged_at + len(half), damaged_at + len(half) + len(in_progress), b"the record being written now")
    expected = frames + [Damage(path, damaged_at, len(half)), finished]
    assert list(read_frames(path, complete_only=True)) == expected
    assert list(read_frames(path)) == expected


def test_a_short_write_raises_and_leaves_a_bounded_damage(tmp_path):
    """A real short write: RLIMIT_FSIZE stops os.pwrite mid-frame (as a full disk would), where segments are
    written rather than mapped."""
    directory = str(tmp_path / "svc")
    first, cut, refused, later = b"first record", b"c" * 30, b"refused record", b"L" * 40

    def child() -> str:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = SegmentWriter(directory, mapped=False)
        writer.append(first)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(writer.path) + 15, hard))
        errors = []
        for payload in (cut, refused):
            try:
                writer.append(payload)
                errors.append("no error")
            except OSError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        writer.append(later)
        return "\n".join([writer.path] + errors)

    path, short, full = run_forked(child).split("\n")
    assert short.startswith("OSError: short write") and "15 of 40 bytes" in short
    assert full.startswith("OSError: [Errno 27]")  # EFBIG: nothing written
    first_end = HEADER_SIZE + len(first)
    expected = [Frame(0, first_end, first), Damage(path, first_end, 15),
                Frame(first_end + 15, first_end + 15 + HEADER_SIZE + len(later), later)]
    assert list(read_frames(path)) == expected
    assert list(read_frames(path, complete_only=True)) == expected


# -- concurrent writers ---------------------------------------------------------------

def test_a_full_disk_fails_a_mapped_append_before_anything_is_stored(tmp_path):
    """A mapped segment grows its file (blocks allocated) before a record is stored past what it holds: when it
    cannot (RLIMIT_FSIZE here, a full disk elsewhere) that append raises OSError and stores nothing -- a store
    into a page with no block behind it would kill the process with SIGBUS instead."""
    directory = str(tmp_path / "svc")
    record = b"r" * 1000

    def child() -> str:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = SegmentWriter(directory)
        writer.append(record)
        reserved = os.path.getsize(writer.path)
        assert reserved == spool.GROWTH  # grown ahead of the records, not once per record
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (reserved, hard))
        stored, errors = 1, []
        for _ in range(200):  # into the reserved space, then past it
            try:
                writer.append(record)
                stored += 1
            except OSError as exc:
                errors.append(exc.errno)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        writer.append(b"after")
        writer.trim()
        return "\n".join([writer.path, str(stored), ",".join(map(str, sorted(set(errors)))), str(len(errors))])

    path, stored, errors, failed = run_forked(child).split("\n")
    frame_size = HEADER_SIZE + len(record)
    assert int(stored) == spool.GROWTH // frame_size and int(failed) == 201 - int(stored)
    assert errors == "27"  # EFBIG, every time: nothing stored
    frames = list(read_frames(path))
    assert [f.payload for f in frames] == [record] * int(stored) + [b"after"]  # no damage at all
    assert os.path.getsize(path) == frames[-1].end


def test_a_killed_writer_leaves_its_records_and_zeros_that_are_not_damage(tmp_path):
    """Records stored into the mapping are in the file when the process is killed (SIGKILL, no exit code runs):
    the reserved zeros after them read as the end, and the orphan is taken and delivered like any other."""
    directory = tmp_path / "svc"
    code = ("import os, signal\nfrom otel_audit.delivery.spool import SegmentWriter\n"
            f"w = SegmentWriter({str(directory)!r})\n"
            "for i in range(300):\n    w.append(b'record %d' % i)\n"
            "print(w.path, w.size, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=CHILD_CWD)
    assert result.returncode == -signal.SIGKILL, result.stderr
    path, size = result.stdout.split()
    assert os.path.getsize(path) > int(size) and contents(path)[int(size):].count(0) == os.path.getsize(path) - int(size)
    for complete_only in (False, True):
        assert [f.payload for f in read_frames(path, complete_only=complete_only)] == [b"record %d" % i for i in range(300)]
    lock = OrphanLock.take(path)
    assert lock is not None  # the killed writer's flock went with it
    lock.release(delete=False)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_mapped_segment_keeps_no_descriptor_but_its_own_and_writes_none(tmp_path, monkeypatch):
    """One descriptor per segment (no hidden duplicate a program's os.closerange could close and reuse), and
    a record in a mapped segment is stored without a system call: readable at once through another descriptor."""
    def open_descriptors() -> set[int]:
        listed = {int(name) for name in os.listdir("/proc/self/fd")}  # (the listing's own one is closed again)
        return {fd for fd in listed if _is_open(fd)}

    before = open_descriptors()
    writer = SegmentWriter(str(tmp_path))
    writer.append(b"first")
    assert open_descriptors() - before == {writer._own.fd}

    def no_system_call(*args):
        raise AssertionError("a system call on the record path")

    for name in ("write", "pwrite", "fstat", "posix_fallocate"):
        monkeypatch.setattr(os, name, no_system_call)
    writer.append(b"second")
    monkeypatch.undo()
    assert payloads_in(writer.path) == [b"first", b"second"]
    assert [f.payload for f in read_frames(writer.path, stop=writer.size)] == [b"first", b"second"]


def test_a_mapped_segment_grows_and_is_cut_to_its_records_when_closed(tmp_path):
    writer = SegmentWriter(str(tmp_path), max_segment_bytes=3 * spool.GROWTH)
    payloads = [b"%05d" % i + b"x" * 200 for i in range(2000)]  # two segments' worth, and some
    for payload in payloads:
        writer.append(payload)
    closed = writer.closed  # in the order they were written
    assert closed and sorted(closed + [writer.path]) == segments(str(tmp_path))
    # rotated at the size: closed, cut to its records (no reserved zeros left)
    read = []
    for path in closed + [writer.path]:
        frames = only_frames(read_frames(path))
        read += [f.payload for f in frames]
        if path != writer.path:
            assert os.path.getsize(path) == frames[-1].end >= 3 * spool.GROWTH
    assert read == payloads


def test_threads_sharing_one_writer(tmp_path):
    threads_n, per_thread = 8, 2000
    writer = SegmentWriter(str(tmp_path / "svc"))
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            writer.append(f"t{t}-{i}".encode())

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert segments(str(tmp_path / "svc")) == [writer.path]
    frames = only_frames(read_frames(writer.path))
    assert len(frames) == threads_n * per_thread
    counts = collections.Counter(f.payload for f in frames)
    assert counts == collections.Counter(f"t{t}-{i}".encode() for t in range(threads_n) for i in range(per_thread))
    assert frames[0].offset == 0 and frames[-1].end == writer.size  # (the file holds reserved zeros after that)
    assert all(a.end == b.offset for a, b in zip(frames, frames[1:]))
    # each thread's records are in the order it appended them
    by_thread = collections.defaultdict(list)
    for f in frames:
        t, i = f.payload.decode().split("-")
        by_thread[t].append(int(i))
    assert all(seq == list(range(per_thread)) for seq in by_thread.values())


def _process_writer(directory: str, tag: str, n: int, start) -> None:
    writer = SegmentWriter(directory)
    start.wait()
    for i in range(n):
        writer.append(f"{tag}-{i}".encode())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_write_separate_segments(tmp_path, method):
    directory, n = str(tmp_path / "svc"), 1000
    context = multiprocessing.get_context(method)
    start = context.Barrier(4)
    processes = [context.Process(target=_process_writer, args=(directory, f"p{i}", n, start)) for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0

    found = segments(directory)
    assert len(found) == 4
    by_pid = {int(os.path.basename(path).split("-")[0]): path for path in found}
    assert sorted(by_pid) == sorted(p.pid for p in processes)
    for i, process in enumerate(processes):
        assert payloads_in(by_pid[process.pid]) == [f"p{i}-{j}".encode() for j in range(n)]
        assert OrphanLock.take(by_pid[process.pid]) is not None  # its writer is gone


# -- permissions -----------------------------------------------------------------------

def test_directory_0700_segment_0600_whatever_the_umask(tmp_path):
    directory = tmp_path / "spool" / "svc"
    old = os.umask(0)
    try:
        path = write_segment(directory, [b"x"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.dirname(path) == str(directory) and path.endswith(".seg")
    assert os.path.basename(path).startswith(f"{os.getpid()}-")


# -- ownership -------------------------------------------------------------------------

WRITER_CHILD = """
import sys
from otel_audit.delivery.spool import SegmentWriter
writer = SegmentWriter(sys.argv[1])
writer.append(b"from the child")
print(writer.path, flush=True)
sys.stdin.read()  # hold the segment until killed
"""


def test_a_live_writer_owns_its_segment_until_it_is_killed(tmp_path):
    directory = str(tmp_path / "svc")
    child = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, directory], cwd=CHILD_CWD,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        path = child.stdout.readline().strip()
        assert segments(directory) == [path]
        assert OrphanLock.take(path) is None
        assert take_in_other_process(path) == "held"
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    lock = OrphanLock.take(path)
    assert lock is not None
    try:
        # flock conflicts across open file descriptions: another fd in this process, another process
        assert OrphanLock.take(path) is None
        assert take_in_other_process(path) == "held"
        assert payloads_in(path) == [b"from the child"]
    finally:
        lock.release(delete=False)
    assert os.path.exists(path)

    lock = OrphanLock.take(path)
    assert lock is not None
    write_ack(path, {"otlp": HEADER_SIZE + len(b"from the child")})
    lock.release(delete=True)
    assert not os.path.exists(path) and not os.path.exists(path + ACK_SUFFIX)
    assert os.listdir(directory) == [] and segments(directory) == []


def test_a_writer_in_this_process_also_excludes_orphan_locks(tmp_path):
    path = write_segment(tmp_path, [b"mine"])
    assert OrphanLock.take(path) is None
    assert take_in_other_process(path) == "held"


def test_take_of_a_missing_segment_is_none(tmp_path):
    assert OrphanLock.take(str(tmp_path / "gone.seg")) is None


def test_an_orphan_scan_never_takes_a_segment_whose_writer_is_opening_it(tmp_path, monkeypatch):
    """An orphan scan (OrphanLock.take, delete once delivered, as deliver_orphans does) that runs
    at the worst moment -- the writer has created its file but not locked it yet -- must not find
    it: if it took and deleted that segment, the writer would lock and fill an unlinked file."""
    directory = str(tmp_path / "svc")
    real_flock = fcntl.flock
    scanned, taken = [], []

    def flock_right_after_a_scan(fd, operation):
        if not scanned:  # the writer's own flock: let an orphan scan run first
            scanned.append(True)
            for path in segments(directory):
                lock = OrphanLock.take(path)
                if lock is not None:
                    taken.append(path)
                    lock.release(delete=not payloads_in(path))
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_right_after_a_scan)
    writer = SegmentWriter(directory)
    writer.append(b"first")
    writer.append(b"second")
    monkeypatch.undo()

    assert scanned and taken == []
    assert segments(directory) == [writer.path]
    assert payloads_in(writer.path) == [b"first", b"second"]
    assert OrphanLock.take(writer.path) is None
    assert os.listdir(directory) == [os.path.basename(writer.path)]  # nothing else left behind


def _aged(path: Path, seconds: float, content: bytes | None = None) -> Path:
    """``path`` (created, with ``content``, if given) last modified ``seconds`` ago."""
    if content is not None:
        path.write_bytes(content)
    then = os.stat(path).st_mtime - seconds
    os.utime(path, (then, then))
    return path


def test_only_abandoned_creations_are_removed(tmp_path):
    directory = tmp_path / "svc"
    writer = SegmentWriter(str(directory))
    writer.append(b"kept")
    old = spool.ABANDONED_CREATION_SECONDS + 5
    _aged(directory / ".1-aaaa.seg.new", old, b"")  # abandoned: removed
    _aged(directory / ".2-bbbb.seg.new", 0, b"")  # just created: its writer may be about to lock it
    locked = _aged(directory / ".3-cccc.seg.new", old, b"")
    holder = os.open(locked, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its writer is alive (stopped, say): never touched
    _aged(directory / ".4-dddd.seg.new", old, b"x")  # not empty: not a creation of ours
    _aged(directory / ".notes.new", old, b"")  # not a segment's creation
    try:
        assert spool.remove_abandoned_creations(str(directory)) == 1
    finally:
        os.close(holder)
    assert sorted(os.listdir(directory)) == sorted([
        ".2-bbbb.seg.new", ".3-cccc.seg.new", ".4-dddd.seg.new", ".notes.new", os.path.basename(writer.path)])
    assert payloads_in(writer.path) == [b"kept"]
    assert spool.remove_abandoned_creations(str(tmp_path / "absent")) == 0


def test_a_writer_killed_while_creating_its_segment_leaves_nothing_after_the_next_scan(tmp_path):
    """SIGKILL between creating the hidden file and renaming it (the rename is where it dies)."""
    from otel_audit.delivery.shipper import deliver_orphans

    directory = tmp_path / "svc"
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from otel_audit.delivery import spool
spool.os.rename = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
spool.SegmentWriter({str(directory)!r}).append(b"never written")
"""], cwd=CHILD_CWD, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = os.listdir(directory)
    assert left.startswith(".") and left.endswith(".seg.new") and (directory / left).stat().st_size == 0
    assert deliver_orphans(str(directory), {}).undelivered == 0
    assert os.listdir(directory) == [left]  # too recent to be judged abandoned
    _aged(directory / left, spool.ABANDONED_CREATION_SECONDS + 1)
    assert deliver_orphans(str(directory), {}).undelivered == 0
    assert os.listdir(directory) == []


# -- fork --------------------------------------------------------------------------------

def test_a_forked_child_writes_a_segment_of_its_own(tmp_path):
    directory = str(tmp_path / "svc")
    writer = SegmentWriter(directory)
    for i in range(3):
        writer.append(f"parent-{i}".encode())
    parent_path = writer.path

    def child() -> str:
        for i in range(4):
            writer.append(f"child-{i}".encode())
        return f"{os.getpid()} {writer.path}"

    child_pid, child_path = run_forked(child).split(" ")
    assert child_path != parent_path
    assert os.path.dirname(child_path) == directory
    assert os.path.basename(child_path).startswith(f"{child_pid}-")
    assert sorted(segments(directory)) == sorted([parent_path, child_path])
    assert payloads_in(child_path) == [f"child-{i}".encode() for i in range(4)]
    assert payloads_in(parent_path) == [f"parent-{i}".encode() for i in range(3)]

    # the child's exit released nothing of the parent's: its segment is still owned
    assert writer.path == parent_path
    assert OrphanLock.take(parent_path) is None
    assert take_in_other_process(parent_path) == "held"
    lock = OrphanLock.take(child_path)  # the child's is an orphan now
    assert lock is not None
    lock.release(delete=False)

    writer.append(b"parent-3")
    assert payloads_in(parent_path) == [f"parent-{i}".encode() for i in range(4)]
    assert payloads_in(child_path) == [f"child-{i}".encode() for i in range(4)]


def test_a_forked_child_that_never_appends_creates_no_segment(tmp_path):
    directory = str(tmp_path / "svc")
    writer = SegmentWriter(directory)
    writer.append(b"parent")
    assert run_forked(lambda: repr(writer.path)) == "None"
    assert segments(directory) == [writer.path]
    assert OrphanLock.take(writer.path) is None


# -- acks --------------------------------------------------------------------------------

def test_ack_round_trip_and_atomic_replacement(tmp_path):
    path = write_segment(tmp_path, [b"a", b"b"])
    assert read_ack(path) == {}  # none yet
    write_ack(path, {"otlp": 11, "file": 0})
    assert read_ack(path) == {"otlp": 11, "file": 0}
    with open(path + ACK_SUFFIX, "rb") as old:
        write_ack(path, {"otlp": 22, "file": 11})
        assert json.loads(old.read()) == {"otlp": 11, "file": 0}  # replaced, never rewritten in place
    assert read_ack(path) == {"otlp": 22, "file": 11}
    write_ack(path, {})
    assert read_ack(path) == {}
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(path), os.path.basename(path) + ACK_SUFFIX])
    assert stat.S_IMODE(os.stat(path + ACK_SUFFIX).st_mode) == 0o600


@pytest.mark.parametrize("garbage", [b"", b"twelve", b"12", b"[12]", b'"12"', b'{"otlp": 1', b"\xff\xfe", b"null"])
def test_an_unreadable_ack_is_empty(tmp_path, garbage):
    path = str(tmp_path / "x.seg")
    rewrite(path + ACK_SUFFIX, garbage)
    assert read_ack(path) == {}


def test_ack_entries_that_are_not_offsets_are_dropped(tmp_path):
    path = str(tmp_path / "x.seg")
    rewrite(path + ACK_SUFFIX, b'{"good": 7, "negative": -1, "text": "7", "float": 7.5, "none": null, "zero": 0}')
    assert read_ack(path) == {"good": 7, "zero": 0}


def test_a_missing_ack_is_empty(tmp_path):
    assert read_ack(str(tmp_path / "never-written.seg")) == {}
    os.mkdir(tmp_path / "dir.seg.ack")  # unreadable as a file
    assert read_ack(str(tmp_path / "dir.seg")) == {}


# -- fsync policy --------------------------------------------------------------------------

@pytest.fixture
def fsyncs(monkeypatch):
    """Inode of every file os.fsync is called on (the real fsync still runs)."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        calls.append(os.fstat(fd).st_ino)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


def test_fsync_always_syncs_every_append(tmp_path, fsyncs):
    writer = SegmentWriter(str(tmp_path), fsync="always")
    for i in range(5):
        writer.append(b"r%d" % i)
    inode = os.stat(writer.path).st_ino
    assert fsyncs == [inode] * 5
    writer.sync()  # nothing left unsynced
    assert fsyncs == [inode] * 5


def test_fsync_batch_syncs_once_per_sync_of_dirty_appends(tmp_path, fsyncs):
    writer = SegmentWriter(str(tmp_path), fsync="batch")
    writer.sync()  # no segment yet
    assert fsyncs == []
    for i in range(5):
        writer.append(b"r%d" % i)
    assert fsyncs == []
    inode = os.stat(writer.path).st_ino
    writer.sync()
    assert fsyncs == [inode]
    writer.sync()  # clean: no second fsync
    assert fsyncs == [inode]
    writer.append(b"more")
    assert fsyncs == [inode]
    writer.sync()
    assert fsyncs == [inode, inode]
    assert payloads_in(writer.path) == [b"r0", b"r1", b"r2", b"r3", b"r4", b"more"]


def test_fsync_never(tmp_path, fsyncs):
    writer = SegmentWriter(str(tmp_path), fsync="never")
    writer.append(b"a")
    writer.sync()
    assert fsyncs == []


# -- failures --------------------------------------------------------------------------------

def test_append_raises_oserror_when_the_directory_cannot_be_made(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"a regular file")
    directory = blocker / "spool" / "svc"
    writer = SegmentWriter(str(directory))
    with pytest.raises(OSError):
        writer.append(b"lost")
    assert writer.path is None
    with pytest.raises(OSError):  # still failing, still raising
        writer.append(b"lost too")

    blocker.unlink()  # the directory can be made now: the writer recovers
    writer.append(b"kept")
    assert segments(str(directory)) == [writer.path]
    assert payloads_in(writer.path) == [b"kept"]


def test_segments_lists_only_segment_files_sorted(tmp_path):
    assert segments(str(tmp_path / "missing")) == []
    for name in ["2-b.seg", "1-a.seg", "1-a.seg.ack", "1-a.seg.ack.7.tmp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert segments(str(tmp_path)) == [str(tmp_path / "1-a.seg"), str(tmp_path / "2-b.seg")]


def test_progress_acknowledged_by_exporter_name_before_destinations_is_kept(tmp_path):
    """A segment an older otel-audit delivered (acks keyed by exporter name, no .dest) is not delivered again."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from otel_audit.delivery.shipper import deliver_orphans

    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit.delivery.shipper import encode_record

    writer = SegmentWriter(str(tmp_path))
    writer.append(encode_record(ReadableLogRecord(LogRecord(body="delivered before"), Resource.create({}),
                                                  InstrumentationScope("t"))))
    path = writer.path
    writer._close()
    spool.write_ack(path, {"memory": os.path.getsize(path)})  # the old key: the name alone
    exporter = InMemoryLogRecordExporter()
    report = deliver_orphans(str(tmp_path), {"memory /somewhere": exporter})
    assert exporter.get_finished_logs() == ()
    assert (report.delivered, report.undelivered) == (0, 0) and not os.path.exists(path)
