"""Nobody else's records, nobody else's hands on ours: owner-only modes whatever the umask, spool
directories and segments of other users refused (never delivered), trail files tightened or refused,
delivered segments removed.  Real programs under `opentelemetry-instrument`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import BIN, OPENTELEMETRY_INSTRUMENT, flush_spool, instrumented_env, records_from_jsonl, run_instrumented
from otel_audit import schema

OTHER_UID = 65534  # nobody
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's files needs root")

ONE_ACCESS = """
    with open("data.txt", "w") as handle:
        handle.write("x")
"""


def _job(tmp_path: Path, body: str = ONE_ACCESS) -> Path:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(body))
    return script


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)




def _spooled_segment(tmp_path: Path, service: str) -> Path:
    """A real segment left by a real program (no exporter configured: its record stays spooled)."""
    spool = tmp_path / f"spool-of-{service}"
    work = tmp_path / f"work-of-{service}"
    work.mkdir()
    env = instrumented_env(OTEL_LOGS_EXPORTER="none", OTEL_SERVICE_NAME=service,
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(_job(work), cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    [segment] = (spool / service).glob("*.seg")
    return segment


# -- modes -------------------------------------------------------------------

MODES_WHILE_RUNNING = """
    import json, os, sys, time
    with open("data.txt", "w") as handle:
        handle.write("x")
    spool, trail = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 20
    def acks():
        return [n for _, _, names in os.walk(spool) for n in names if n.endswith(".ack")]
    while time.monotonic() < deadline and not (os.path.exists(trail) and os.path.getsize(trail) and acks()):
        time.sleep(0.05)
    modes = {}
    for top in (spool, os.path.dirname(os.path.dirname(trail))):
        for where, dirs, files in os.walk(top):
            for name in [""] + dirs + files:
                path = os.path.join(where, name)
                try:
                    modes[path] = os.lstat(path).st_mode & 0o7777
                except FileNotFoundError:  # an ack's temporary file, renamed into place meanwhile
                    pass
    print(json.dumps(modes))
"""


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_directories_0700_and_files_0600_whatever_the_umask(tmp_path, umask):
    spool = tmp_path / "state" / "otel-audit" / "spool"  # none of it exists yet
    trail = tmp_path / "trails" / "today" / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    command = [OPENTELEMETRY_INSTRUMENT, "python", str(_job(tmp_path, MODES_WHILE_RUNNING)), str(spool), str(trail)]
    result = subprocess.run(["sh", "-c", f"umask {umask:03o} && exec \"$@\"", "sh", *command], cwd=tmp_path,
                            env={**env, "PATH": f"{BIN}:{env['PATH']}"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    modes = {Path(p): m for p, m in json.loads(result.stdout).items()}
    created_dirs = [tmp_path / "state", tmp_path / "state" / "otel-audit", spool, spool / "audit-test",
                    tmp_path / "trails", tmp_path / "trails" / "today"]
    files = [p for p, m in modes.items() if p.suffix in (".seg", ".ack", ".jsonl")]
    assert sorted(p.suffix for p in files) == [".ack", ".jsonl", ".seg"], modes
    assert {p: modes[p] for p in created_dirs if p in modes} == {p: 0o700 for p in created_dirs[2:]}
    assert {p: _mode(p) for p in created_dirs} == {p: 0o700 for p in created_dirs}
    assert {p: modes[p] for p in files} == {p: 0o600 for p in files}
    assert _mode(trail) == 0o600
    records = [r["attributes"] for r in records_from_jsonl(trail)]
    # the one open, and the job's own os.walk of the spool and trail directories (listing them is an access)
    assert [a[schema.AUDIT_API] for a in records if a[schema.AUDIT_API] != "os.walk"] == ["builtins.open"]
    assert {a[schema.AUDIT_RESOURCE_URI] for a in records if a[schema.AUDIT_API] == "os.walk"} <= {
        spool.as_uri(), (tmp_path / "trails").as_uri()}


def test_delivered_segments_are_removed_when_the_process_ends(tmp_path):
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert len(records_from_jsonl(trail)) == 1
    service = Path(env["OTEL_PYTHON_AUDIT_SPOOL_DIR"]) / "audit-test"
    assert service.is_dir() and sorted(os.listdir(service)) == []  # audit data does not linger in a second place


def test_segments_not_delivered_stay(tmp_path):
    segment = _spooled_segment(tmp_path, "undelivered")
    assert segment.stat().st_size > 0 and _mode(segment) == 0o600


# -- the spool of another user -----------------------------------------------

def _plant(tmp_path: Path, spool: Path, service: str = "audit-test") -> tuple[Path, int]:
    """Another user pre-created this service's spool directory (0777) and put a segment in it."""
    forged = _spooled_segment(tmp_path, "forger")
    directory = spool / service
    directory.mkdir(parents=True)
    planted = directory / "1-000000000000.seg"
    shutil.copyfile(forged, planted)
    os.chown(planted, OTHER_UID, OTHER_UID)
    os.chown(directory, OTHER_UID, OTHER_UID)
    os.chmod(directory, 0o777)
    return planted, planted.stat().st_size


@needs_root
def test_a_spool_directory_planted_by_another_user_is_refused_and_its_records_never_delivered(tmp_path):
    spool, trail = tmp_path / "spool", tmp_path / "trail.jsonl"
    planted, size = _plant(tmp_path, spool)
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{spool / 'audit-test'} is owned by uid {OTHER_UID}, not by this user (uid 0)" in result.stderr
    assert "AUDIT RECORDS NOT SPOOLED" in result.stderr  # ON_FAILURE=open: in-memory, loudly
    records = records_from_jsonl(trail)
    assert [(r["attributes"][schema.PROCESS_PID] != 0, r["resource"]["service.name"]) for r in records] == [
        (True, "audit-test")]  # the program's own record, and not the forger's
    assert records[0]["attributes"][schema.FILE_PATH] == str(tmp_path / "data.txt")
    assert planted.stat().st_size == size and planted.stat().st_uid == OTHER_UID  # not touched, not taken
    assert _mode(spool / "audit-test") == 0o777  # not ours to change

    flushed = flush_spool({**env, "OTEL_PYTHON_AUDIT_FILE": str(tmp_path / "flushed.jsonl")}, spool)
    assert flushed.returncode == 1, flushed.stdout + flushed.stderr
    assert "NOT DELIVERED, possibly forged" in flushed.stderr and "1 segments refused" in flushed.stderr
    assert not (tmp_path / "flushed.jsonl").exists()


@needs_root
def test_fail_closed_refuses_accesses_when_the_spool_directory_is_another_users(tmp_path):
    spool, trail = tmp_path / "spool", tmp_path / "trail.jsonl"
    _plant(tmp_path, spool)
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool), OTEL_PYTHON_AUDIT_ON_FAILURE="closed")
    script = _job(tmp_path, """
        try:
            open("data.txt", "w")
        except PermissionError as refused:
            print("refused:", refused)
    """)
    result = run_instrumented(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: otel-audit refused this access because it could not be audited: ")
    assert f"is owned by uid {OTHER_UID}" in result.stdout
    assert not (tmp_path / "data.txt").exists()  # refused before it happened
    assert not trail.exists()  # and nothing of the forger's delivered


@needs_root
def test_a_segment_of_another_user_in_our_directory_is_never_delivered(tmp_path):
    segment = _spooled_segment(tmp_path, "svc")
    spool = segment.parent.parent
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "out.jsonl"))
    os.chown(segment, OTHER_UID, OTHER_UID)
    refused = flush_spool(env, spool)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{segment} is owned by uid {OTHER_UID}, not by this user (uid 0)" in refused.stderr
    assert not (tmp_path / "out.jsonl").exists() and segment.exists()
    os.chown(segment, 0, 0)  # the same segment, ours: delivered
    delivered = flush_spool(env, spool)
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    assert "3 records delivered" in delivered.stdout  # the access, its process's "started" and closing checkpoint
    assert [r["resource"]["service.name"] for r in records_from_jsonl(tmp_path / "out.jsonl")] == ["svc"]


@needs_root
def test_a_spool_directory_of_ours_writable_by_others_is_tightened(tmp_path):
    spool, trail = tmp_path / "spool", tmp_path / "trail.jsonl"
    (spool / "audit-test").mkdir(parents=True)
    os.chmod(spool, 0o777)
    os.chmod(spool / "audit-test", 0o777)
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"otel-audit: {spool / 'audit-test'} was writable by other users (mode 0777); tightened to 0700" in result.stderr
    assert f"otel-audit: {spool} was writable by other users (mode 0777); tightened to 0700" in result.stderr
    assert (_mode(spool), _mode(spool / "audit-test")) == (0o700, 0o700)
    assert "NOT SPOOLED" not in result.stderr and len(records_from_jsonl(trail)) == 1


# -- the trail file --------------------------------------------------------------

def test_an_existing_trail_readable_by_others_is_tightened_and_said(tmp_path):
    trail = tmp_path / "trail.jsonl"
    trail.write_text("")
    os.chmod(trail, 0o644)
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _mode(trail) == 0o600
    assert f"otel-audit: {trail} was mode 0644; tightened to 0600 (audit data is owner-only)" in result.stderr
    assert len(records_from_jsonl(trail)) == 1


def test_a_torn_last_line_in_the_trail_does_not_swallow_the_next_batch(tmp_path):
    trail = tmp_path / "trail.jsonl"
    trail.write_text('{"resourceLogs": [{"resou')  # a writer killed mid-line
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    assert run_instrumented(_job(tmp_path), cwd=tmp_path, env=env).returncode == 0
    shown = subprocess.run([str(BIN / "otel-audit"), "show", str(trail)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 1  # the torn line is reported...
    assert f"{trail}:1:" in shown.stderr
    assert len(shown.stdout.splitlines()) == 2 and "data.txt" in shown.stdout  # ...and our record is whole


def _refused_trail_keeps_records_spooled(tmp_path: Path, trail: Path, reason: str) -> None:
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT="1")
    result = run_instrumented(_job(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"otel-audit: cannot write the audit trail '{trail}': {reason}" in result.stderr
    assert "the records stay in the spool" in result.stderr
    good = tmp_path / "good.jsonl"
    spool = Path(env["OTEL_PYTHON_AUDIT_SPOOL_DIR"])
    elsewhere = flush_spool({**env, "OTEL_PYTHON_AUDIT_FILE": str(good)}, spool)
    assert elsewhere.returncode == 1 and "3 records NOT delivered" in elsewhere.stderr  # owed to the refused trail (and "started", the checkpoint)
    assert f"records owed to 'audit_file {trail}' are not delivered from here" in elsewhere.stderr
    flushed = flush_spool({**env, "OTEL_PYTHON_AUDIT_FILE": str(good)}, spool, "--redirect")
    assert flushed.returncode == 0 and "3 records delivered" in flushed.stdout, flushed.stderr  # nothing lost
    assert [r["attributes"][schema.FILE_PATH] for r in records_from_jsonl(good)] == [str(tmp_path / "data.txt")]


@needs_root
def test_a_trail_file_of_another_user_is_refused(tmp_path):
    trail = tmp_path / "trail.jsonl"
    trail.write_text("")
    os.chown(trail, OTHER_UID, OTHER_UID)
    _refused_trail_keeps_records_spooled(
        tmp_path, trail, f"{trail} is owned by uid {OTHER_UID}, not by this user (uid 0): audit records are not "
                         "written into another user's file")
    assert trail.read_text() == ""


def test_a_trail_path_that_is_a_symbolic_link_is_refused(tmp_path):
    target = tmp_path / "somebody-elses.txt"
    target.write_text("theirs\n")
    trail = tmp_path / "trail.jsonl"
    trail.symlink_to(target)
    _refused_trail_keeps_records_spooled(tmp_path, trail, "Too many levels of symbolic links")
    assert target.read_text() == "theirs\n"


def test_a_fifo_at_the_trail_path_does_not_hang_the_program(tmp_path):
    trail = tmp_path / "trail.jsonl"
    os.mkfifo(trail)
    _refused_trail_keeps_records_spooled(tmp_path, trail, f"{trail} is not a regular file")


def test_report_output_is_owner_only(tmp_path):
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    assert run_instrumented(_job(tmp_path), cwd=tmp_path, env=env).returncode == 0
    for fmt in ("html", "csv"):
        out = tmp_path / f"report.{fmt}"
        made = subprocess.run([str(BIN / "otel-audit"), "report", str(trail), "--format", fmt, "-o", str(out)],
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        assert _mode(out) == 0o600 and "data.txt" in out.read_text()
