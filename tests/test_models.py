"""torch.load/save and joblib.load/dump: one `model` record per call; buffers keep working."""

from __future__ import annotations

import io
import pickle
import sys

import joblib
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from otel_audit import schema


def _attributes(audited):
    return [r["attributes"] for r in audited.records()]


def test_torch_save_and_load(audited, tmp_path):
    path = tmp_path / "weights.bin"  # no model extension: the API decides the type
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    torch.save(state, path); save_line = sys._getframe().f_lineno  # noqa: E702
    loaded = torch.load(str(path), weights_only=True); load_line = sys._getframe().f_lineno  # noqa: E702
    assert torch.equal(loaded["w"], state["w"])
    saved, read = _attributes(audited)
    for a, api, action, line in ((saved, "torch.save", "write", save_line), (read, "torch.load", "read", load_line)):
        assert a[schema.AUDIT_API] == api
        assert a[schema.AUDIT_ACTION] == action
        assert a[schema.AUDIT_OUTCOME] == "success"
        assert a[schema.AUDIT_RESOURCE_TYPE] == "model"
        assert a[schema.AUDIT_RESOURCE_URI] == f"file://{path}"
        assert a[schema.CODE_LINE_NUMBER] == line
        assert a[schema.CODE_FILE_PATH] == __file__
    assert read[schema.FILE_SIZE] == path.stat().st_size
    assert schema.FILE_SIZE not in saved
    assert read[schema.AUDIT_SEQ] == saved[schema.AUDIT_SEQ] + 1


def test_torch_buffer_works_and_is_not_recorded(audited):
    buffer = io.BytesIO()
    torch.save({"x": torch.ones(2)}, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=True)["x"], torch.ones(2))
    assert audited.all_records() == []


def test_torch_load_failure_same_exception(audited, tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    audited.clear()
    with pytest.raises(Exception) as plain:
        torch.load.__wrapped__(bad, weights_only=True)
    audited.clear()
    with pytest.raises(type(plain.value)) as raised:
        torch.load(bad, weights_only=True)
    assert str(raised.value) == str(plain.value)
    (a,) = _attributes(audited)
    assert a[schema.AUDIT_OUTCOME] == "failure"
    assert a[schema.ERROR_TYPE] == (
        type(plain.value).__qualname__ if type(plain.value).__module__ == "builtins"
        else f"{type(plain.value).__module__}.{type(plain.value).__qualname__}")
    assert a[schema.AUDIT_RESOURCE_TYPE] == "model"


def test_joblib_dump_and_load(audited, tmp_path):
    model = LogisticRegression().fit([[0], [1], [2], [3]], [0, 0, 1, 1])
    path = tmp_path / "model.joblib"
    assert joblib.dump(model, path) == [str(path)]
    loaded = joblib.load(path); line = sys._getframe().f_lineno  # noqa: E702
    assert loaded.predict([[3]]).tolist() == [1]
    dumped, read = _attributes(audited)  # joblib's internal open() calls are not recorded again
    assert (dumped[schema.AUDIT_API], dumped[schema.AUDIT_ACTION]) == ("joblib.dump", "write")
    assert (read[schema.AUDIT_API], read[schema.AUDIT_ACTION]) == ("joblib.load", "read")
    assert read[schema.AUDIT_RESOURCE_TYPE] == dumped[schema.AUDIT_RESOURCE_TYPE] == "model"
    assert read[schema.AUDIT_RESOURCE_URI] == f"file://{path}"
    assert read[schema.CODE_LINE_NUMBER] == line
    assert read[schema.FILE_SIZE] == path.stat().st_size


def test_joblib_file_object_works(audited, tmp_path):
    path = tmp_path / "obj.pkl"
    joblib.dump({"a": 1}, path)
    audited.clear()
    with open(path, "rb") as handle:
        assert joblib.load(handle) == {"a": 1}
    # only the open() is on record: the file object names no resource for joblib.load
    assert [(a[schema.AUDIT_API], a[schema.AUDIT_RESOURCE_TYPE]) for a in _attributes(audited)] == [
        ("builtins.open", "data")]


def test_joblib_missing_file(audited, tmp_path):
    with pytest.raises(FileNotFoundError):
        joblib.load(tmp_path / "absent.joblib")
    (a,) = _attributes(audited)
    assert (a[schema.AUDIT_OUTCOME], a[schema.ERROR_TYPE], a[schema.AUDIT_API]) == (
        "failure", "FileNotFoundError", "joblib.load")


def test_model_extension_makes_open_a_model_access(audited, tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"x")
    (tmp_path / "table.parquet").write_bytes(b"x")
    audited.clear()
    open(tmp_path / "net.onnx", "rb").close()
    open(tmp_path / "table.parquet", "rb").close()
    assert [a[schema.AUDIT_RESOURCE_TYPE] for a in _attributes(audited)] == ["model", "data"]


def test_wrapped_functions_keep_their_signature_and_pickle(audited):
    import inspect

    assert inspect.signature(torch.load) == inspect.signature(torch.load.__wrapped__)
    assert inspect.signature(joblib.load) == inspect.signature(joblib.load.__wrapped__)
    assert torch.load.__name__ == "load" and torch.load.__doc__ == torch.load.__wrapped__.__doc__
    assert pickle.loads(pickle.dumps(joblib.load)) is joblib.load


def test_patched_functions_pickle_by_reference(audited, tmp_path):
    import multiprocessing

    import cloudpickle
    import pandas as pd

    for function in (pd.read_csv, joblib.load, torch.load, open):
        assert pickle.loads(pickle.dumps(function)) is function
        assert cloudpickle.loads(cloudpickle.dumps(function)) is function
    # The pickle names only the library: a process without otel-audit can load it.
    assert b"otel_audit" not in pickle.dumps(pd.read_csv)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"part{i}.csv")
        pd.DataFrame({"a": [i]}).to_csv(paths[-1], index=False)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        frames = pool.map(pd.read_csv, paths)
    assert [f["a"].tolist() for f in frames] == [[0], [1]]
