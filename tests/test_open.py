"""builtins.open / io.open / pathlib: one record per open, action from the mode, nothing else changed."""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import sys

import pytest

from otel_audit import schema


def _only(records, **expected):
    assert len(records) == 1, [r["body"] for r in records]
    attributes = records[0]["attributes"]
    for key, value in expected.items():
        assert attributes[key] == value, (key, attributes)
    return records[0]


def test_read_record_every_field(audited, tmp_path):
    data = tmp_path / "train.csv"
    data.write_bytes(b"a,b\n1,2\n")
    audited.clear()

    with open(data) as handle:  # the line recorded as the call site
        line = sys._getframe().f_lineno - 1
        assert handle.read() == "a,b\n1,2\n"

    record = _only(audited.records())
    a = record["attributes"]
    assert a[schema.AUDIT_ACTION] == "read"
    assert a[schema.AUDIT_OUTCOME] == "success"
    assert a[schema.AUDIT_API] == "builtins.open"
    assert a[schema.AUDIT_RESOURCE_URI] == f"file://{data}"
    assert a[schema.AUDIT_RESOURCE_TYPE] == "data"
    assert a[schema.AUDIT_MODE] == "r"
    assert a[schema.FILE_PATH] == str(data)
    assert a[schema.FILE_SIZE] == 8
    assert a[schema.PROCESS_PID] == os.getpid()
    assert len(a[schema.AUDIT_CHAIN_HASH]) == 64 and int(a[schema.AUDIT_CHAIN_HASH], 16) >= 0  # hex SHA-256
    assert a[schema.USER_ID] == str(os.getuid())
    assert a[schema.USER_NAME] and isinstance(a[schema.USER_NAME], str)
    assert a[schema.CODE_FILE_PATH] == __file__
    assert a[schema.CODE_LINE_NUMBER] == line
    assert a[schema.CODE_FUNCTION_NAME] == "test_read_record_every_field"
    assert isinstance(a[schema.AUDIT_SEQ], int) and a[schema.AUDIT_SEQ] >= 1
    assert schema.ERROR_TYPE not in a and schema.ENDUSER_ID not in a
    assert set(a) == schema.REQUIRED_ATTRIBUTES | {schema.AUDIT_CHAIN_HASH} | {schema.AUDIT_MODE, schema.FILE_PATH, schema.FILE_SIZE}
    assert record["event_name"] == "audit.access"
    assert record["severity_text"] == "INFO" and record["severity_number"] == 9
    assert record["body"] == f"{a[schema.USER_NAME]} read data file://{data} via builtins.open (success)"
    assert record["scope"]["name"] == "otel_audit"
    assert record["scope"]["attributes"] == {"audit.schema.version": "1"}


@pytest.mark.parametrize(
    "mode, action",
    [("r", "read"), ("rb", "read"), ("rt", "read"), ("w", "write"), ("wb", "write"),
     ("a", "write"), ("x", "write"), ("r+", "write"), ("rb+", "write")],
)
def test_mode_decides_action(audited, tmp_path, mode, action):
    target = tmp_path / f"file-{mode.replace('+', 'plus')}"
    if "x" not in mode:
        target.write_bytes(b"x")
    audited.clear()
    open(target, mode).close()
    record = _only(audited.records(), **{schema.AUDIT_ACTION: action, schema.AUDIT_MODE: mode})
    assert (schema.FILE_SIZE in record["attributes"]) == (action == "read")


def test_io_open_and_pathlib(audited, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("hello")  # write
    assert target.read_text() == "hello"  # read
    assert target.read_bytes() == b"hello"  # read
    with io.open(target, "rb") as handle:  # read
        assert handle.read() == b"hello"
    records = audited.records()
    assert [r["attributes"][schema.AUDIT_ACTION] for r in records] == ["write", "read", "read", "read"]
    assert {r["attributes"][schema.AUDIT_API] for r in records} == {"builtins.open"}
    # the call site is the user's line, not pathlib's
    assert {r["attributes"][schema.CODE_FILE_PATH] for r in records} == {__file__}
    seqs = [r["attributes"][schema.AUDIT_SEQ] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and seqs[-1] - seqs[0] == 3


def test_failure_recorded_and_same_exception_propagates(audited, tmp_path):
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError) as raised:
        open(missing)
    assert raised.value.filename == str(missing)
    record = _only(audited.records(), **{schema.AUDIT_OUTCOME: "failure", schema.ERROR_TYPE: "FileNotFoundError"})
    assert record["severity_text"] == "WARN" and record["severity_number"] == 13
    assert schema.FILE_SIZE not in record["attributes"]
    assert record["body"].endswith("via builtins.open (failure: FileNotFoundError)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_permission_error_is_denied(audited, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0)
    audited.clear()
    with pytest.raises(PermissionError):
        open(secret)
    _only(audited.records(), **{schema.AUDIT_OUTCOME: "denied", schema.ERROR_TYPE: "PermissionError"})


def test_permission_error_is_denied_via_directory(audited, tmp_path):
    # Works as root too: opening a directory for writing is refused with IsADirectoryError,
    # a failure, while an opener raising PermissionError is a denial.
    def refuse(path, flags):
        raise PermissionError(13, "Permission denied", path)

    with pytest.raises(PermissionError):
        open(tmp_path / "guarded", "w", opener=refuse)
    with pytest.raises(IsADirectoryError):
        open(tmp_path, "w")
    records = audited.all_records()
    outcomes = [(r["attributes"][schema.AUDIT_OUTCOME], r["attributes"][schema.ERROR_TYPE]) for r in records]
    assert outcomes == [("denied", "PermissionError"), ("failure", "IsADirectoryError")]


def test_fd_and_excluded_paths_not_recorded(audited, tmp_path):
    fd = os.open(tmp_path / "raw", os.O_RDWR | os.O_CREAT)  # the os hook's record: os.open write
    with open(fd, "w", closefd=True) as handle:  # an fd names no file: no record
        handle.write("ok")
    assert (tmp_path / "raw").read_text() == "ok"  # builtins.open read
    with open(os.__file__) as handle:  # stdlib
        handle.read(10)
    with open("/proc/self/status") as handle:
        handle.read(10)
    with open("/dev/null", "w") as handle:
        handle.write("x")
    records = audited.all_records()
    assert [(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_ACTION], r["attributes"][schema.AUDIT_RESOURCE_URI])
            for r in records] == [("os.open", "write", f"file://{tmp_path}/raw"), ("builtins.open", "read", f"file://{tmp_path}/raw")]


def test_relative_bytes_and_pathlike_targets(audited, tmp_path):
    (tmp_path / "rel.txt").write_text("r")
    audited.clear()
    open("rel.txt").close()  # cwd is tmp_path
    open(os.fsencode(tmp_path / "rel.txt")).close()
    open(pathlib.PurePath(tmp_path, "rel.txt")).close()
    uris = [r["attributes"][schema.AUDIT_RESOURCE_URI] for r in audited.records()]
    assert uris == [f"file://{tmp_path}/rel.txt"] * 3


def test_hostile_paths_are_recorded_safely(audited, tmp_path):
    odd = tmp_path / "new\nline %20 é"
    odd.write_text("x")
    undecodable = os.fsencode(tmp_path) + b"/bad-\xff-name"
    with open(undecodable, "w") as handle:
        handle.write("y")
    with pytest.raises(ValueError):
        open(str(tmp_path / "nul\x00byte"))  # open refuses it; we record nothing and change nothing
    with pytest.raises(OSError):
        open(str(tmp_path / ("x" * 100_000)))  # far beyond NAME_MAX
    records = audited.records()
    assert len(records) == 3
    first, second, third = (r["attributes"] for r in records)
    assert first[schema.AUDIT_RESOURCE_URI] == f"file://{tmp_path}/new%0Aline%20%2520%20%C3%A9"
    assert first[schema.FILE_PATH] == str(odd)
    assert "\n" not in records[0]["body"]
    assert second[schema.AUDIT_RESOURCE_URI] == f"file://{tmp_path}/bad-%FF-name"
    assert second[schema.FILE_PATH] == f"{tmp_path}/bad-\\xff-name"
    assert third[schema.AUDIT_OUTCOME] == "failure"
    assert len(third[schema.FILE_PATH]) < 4200 and "more characters]" in third[schema.FILE_PATH]


def test_uninstrument_restores_exact_objects(tmp_path):
    from otel_audit import AuditInstrumentor

    original_builtin, original_io = builtins.open, io.open
    AuditInstrumentor().instrument()
    try:
        assert builtins.open is not original_builtin and io.open is not original_io
    finally:
        AuditInstrumentor().uninstrument()
    assert builtins.open is original_builtin and io.open is original_io


def test_odd_arguments_behave_as_without_us(audited, tmp_path, capsys):
    class BrokenPath:
        def __fspath__(self):
            raise RuntimeError("broken __fspath__")

    with pytest.raises(RuntimeError, match="broken __fspath__"):
        open(BrokenPath())
    with pytest.raises(TypeError):
        open(3.5)
    with pytest.raises(TypeError):
        open(None)
    with pytest.raises(ValueError):
        open(tmp_path / "x", "rw")  # invalid mode: open refuses before touching the file
    assert capsys.readouterr().err == ""  # none of this is otel-audit's problem to report
    records = audited.records()
    assert [(r["attributes"][schema.AUDIT_MODE], r["attributes"][schema.AUDIT_OUTCOME], r["attributes"][schema.ERROR_TYPE])
            for r in records] == [("rw", "failure", "ValueError")]


def test_own_files_and_zip_imports_are_excluded(audited):
    import otel_audit.schema as own

    with open(own.__file__) as handle:
        handle.read(1)
    zips = [entry for entry in sys.path if entry.endswith(".zip")]
    for entry in zips:
        try:
            open(entry, "rb").close()
        except OSError:
            pass
    assert audited.all_records() == []


def test_anonymous_temporary_files_are_not_resources(audited, tmp_path):
    import tempfile

    with tempfile.TemporaryFile(dir=tmp_path) as scratch:
        scratch.write(b"x")
    with tempfile.TemporaryFile("w+", dir=tmp_path) as scratch:
        scratch.write("x")
    (tmp_path / "real").write_text("y")
    assert [r["attributes"][schema.AUDIT_RESOURCE_URI] for r in audited.records()] == [f"file://{tmp_path}/real"]


def test_package_metadata_is_excluded(audited, tmp_path):
    for directory in ("mypkg-1.0.dist-info", "mypkg.egg-info"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "entry_points.txt").write_text("")
        (tmp_path / directory / "entry_points.txt").read_text()
    (tmp_path / "notes.dist-info.txt").write_text("a user file that merely has the word in its name")
    assert [r["attributes"][schema.AUDIT_RESOURCE_URI] for r in audited.records()] == [
        f"file://{tmp_path}/notes.dist-info.txt"]
