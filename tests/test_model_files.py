"""numpy and safetensors access points: one record per user-level call, named after that call.

safetensors reads and writes in Rust: without its hook nothing at all is recorded.  numpy opens
through Python: without its hook the record says only ``builtins.open``.  The job
(``scripts/model_files_job.py``) runs once plainly and once under the real ``opentelemetry-instrument``:
same output, and exactly the records its comments name, field by field.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

from conftest import REPO, instrumented_env, otel_audit_lines, records_from_jsonl, run_instrumented
from otel_audit import schema

JOB = REPO / "tests" / "scripts" / "model_files_job.py"
EXPECTATION = re.compile(r"#\s+(\S+) (read|write) (data|model) (\S+)$")


def _expected() -> list[tuple[int, str, str, str, str]]:
    """(line, api, action, type, file name) for each line of the job whose comment names a record."""
    found = []
    for number, line in enumerate(JOB.read_text().splitlines(), start=1):
        match = EXPECTATION.search(line)
        if match:
            found.append((number, *match.groups()))
    return found


def _run_plainly(directory: Path) -> subprocess.CompletedProcess:
    """The job without otel-audit, making its files in ``directory``."""
    directory.mkdir()
    result = subprocess.run([sys.executable, str(JOB), str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_every_call_is_one_record_naming_the_call(tmp_path):
    plain, audited_dir = _run_plainly(tmp_path / "plain"), tmp_path / "audited"
    audited_dir.mkdir()
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    audited = run_instrumented(JOB, str(audited_dir), cwd=tmp_path, env=env)
    assert audited.returncode == 0, audited.stderr
    assert audited.stdout == plain.stdout  # the libraries return exactly what they return without us
    assert otel_audit_lines(audited.stderr) == []

    records = [r for r in records_from_jsonl(trail) if r["event_name"] == schema.EVENT_NAME]
    expected = _expected()
    assert len(expected) == 16
    assert len(records) == len(expected), [r["attributes"][schema.AUDIT_API] for r in records]
    for record, (line, api, action, kind, name) in zip(records, expected):
        attrs = record["attributes"]
        path = (audited_dir / name).resolve()
        assert (attrs[schema.AUDIT_API], attrs[schema.AUDIT_ACTION], attrs[schema.AUDIT_RESOURCE_TYPE]) == (api, action, kind)
        assert attrs[schema.AUDIT_RESOURCE_URI] == path.as_uri()
        assert attrs[schema.FILE_PATH] == str(path)
        assert attrs[schema.AUDIT_OUTCOME] == "success"
        assert (attrs[schema.CODE_FILE_PATH], attrs[schema.CODE_LINE_NUMBER]) == (str(JOB), line), api
        if action == "read":
            assert attrs[schema.FILE_SIZE] == path.stat().st_size
    assert [r["attributes"][schema.AUDIT_SEQ] for r in records] == list(range(1, len(records) + 1))


FAIL_CLOSED = """
import sys
from pathlib import Path
import numpy as np, torch, safetensors.numpy, safetensors.torch
from safetensors import safe_open
src, out = Path(sys.argv[1]), Path(sys.argv[2])
calls = {
    "safetensors.torch.save_file": lambda: safetensors.torch.save_file({"w": torch.zeros(1)}, out / "w.safetensors"),
    "safetensors.torch.load_file": lambda: safetensors.torch.load_file(src / "w.safetensors"),
    "safetensors.safe_open": lambda: safe_open(src / "w.safetensors", framework="pt"),
    "safetensors.torch.save_model": lambda: safetensors.torch.save_model(torch.nn.Linear(2, 2), out / "linear.safetensors"),
    "safetensors.torch.load_model": lambda: safetensors.torch.load_model(torch.nn.Linear(2, 2), src / "linear.safetensors"),
    "safetensors.numpy.save_file": lambda: safetensors.numpy.save_file({"a": np.zeros(1)}, out / "n.safetensors"),
    "safetensors.numpy.load_file": lambda: safetensors.numpy.load_file(src / "n.safetensors"),
    "numpy.save": lambda: np.save(out / "arr", np.zeros(1)),
    "numpy.load": lambda: np.load(src / "arr.npy"),
    "numpy.savez": lambda: np.savez(out / "z", a=np.zeros(1)),
    "numpy.savez_compressed": lambda: np.savez_compressed(out / "c.npz", a=np.zeros(1)),
    "numpy.savetxt": lambda: np.savetxt(out / "t.txt", np.zeros(1)),
    "numpy.loadtxt": lambda: np.loadtxt(src / "t.txt"),
    "numpy.genfromtxt": lambda: np.genfromtxt(src / "t.txt"),
    "numpy.fromfile": lambda: np.fromfile(src / "raw.bin"),
}
for api, call in calls.items():
    try:
        call()
        print(api, "PROCEEDED")
    except PermissionError as exc:
        print(api, "refused" if "could not be audited" in str(exc) else f"other: {exc}")
print("written:", sorted(p.name for p in out.iterdir()))
"""


def test_fail_closed_refuses_each_call_before_it_touches_the_file(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _run_plainly(src)
    out.mkdir()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")  # the spool cannot be made, even by root
    script = tmp_path / "closed.py"
    script.write_text(FAIL_CLOSED)
    env = instrumented_env(OTEL_LOGS_EXPORTER="none", OTEL_PYTHON_AUDIT_ON_FAILURE="closed",
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(blocker / "spool"))
    result = run_instrumented(script, str(src), str(out), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 16
    assert [line.rsplit(" ", 1)[1] for line in lines[:-1]] == ["refused"] * 15, lines
    assert lines[-1] == "written: []"


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "weights.bin"  # not a model extension: safetensors' calls make it a model
    safetensors.torch.save_file({"w": torch.ones(2)}, path)
    return path


def test_safetensors_in_process_records_and_results(audited, weights):
    audited.clear()
    loaded = safetensors.torch.load_file(weights); line = sys._getframe().f_lineno  # noqa: E702
    assert torch.equal(loaded["w"], torch.ones(2))
    (record,) = audited.records()
    attrs = record["attributes"]
    assert (attrs[schema.AUDIT_API], attrs[schema.AUDIT_RESOURCE_TYPE], attrs[schema.CODE_LINE_NUMBER]) == (
        "safetensors.torch.load_file", "model", line)


def test_safetensors_failure_raises_exactly_what_it_raises_without_us(audited, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")
    with pytest.raises(Exception) as plain:
        safetensors.torch.load_file.__wrapped__(bad)
    audited.clear()
    with pytest.raises(type(plain.value)) as raised:
        safetensors.torch.load_file(bad)
    assert str(raised.value) == str(plain.value)
    (record,) = audited.records()
    assert record["attributes"][schema.AUDIT_OUTCOME] == "failure"
    assert record["attributes"][schema.AUDIT_API] == "safetensors.torch.load_file"


def test_numpy_missing_file_is_a_failure_record_and_the_same_error(audited, tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        np.load(tmp_path / "missing.npy")
    assert raised.value.filename == str(tmp_path / "missing.npy")
    (record,) = audited.records()
    assert (record["attributes"][schema.AUDIT_API], record["attributes"][schema.AUDIT_OUTCOME]) == ("numpy.load", "failure")
    assert record["attributes"][schema.ERROR_TYPE] == "FileNotFoundError"


def test_buffers_work_and_are_not_recorded(audited):
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    buffer.seek(0)
    assert np.load(buffer).tolist() == [0, 1, 2]
    assert safetensors.torch.load(safetensors.torch.save({"w": torch.ones(1)}))["w"].tolist() == [1.0]
    assert audited.records() == []


def test_patched_functions_pickle_by_reference(audited):
    for function in (np.load, np.save, safetensors.torch.load_file, safetensors.numpy.save_file, safetensors.safe_open):
        assert type(function).__name__ == "AuditedFunction"
        assert pickle.loads(pickle.dumps(function)) is function
        assert b"otel_audit" not in pickle.dumps(function)


def test_safe_open_is_still_usable_as_the_class_it_is(audited, weights):
    audited.clear()  # the fixture's save_file
    with safetensors.safe_open(weights, framework="pt") as opened:
        assert isinstance(opened, safetensors.safe_open)
        assert type(opened).__name__ == "safe_open"
        assert opened.keys() == ["w"]
    assert [r["attributes"][schema.AUDIT_API] for r in audited.records()] == ["safetensors.safe_open"]
