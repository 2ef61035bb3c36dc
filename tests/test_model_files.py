"""numpy and safetensors access points: one record per user-level call, named after that call.

safetensors reads and writes in Rust: without its hook nothing at all is recorded.  numpy opens
through Python: without its hook the record says only ``builtins.open``.  The job
(``scripts/model_files_job.py``) runs once plainly and once under the real ``opentelemetry-instrument``:
same output, and exactly the records its comments name, field by field (``tests/jobs.py``).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

from conftest import REPO
from jobs import check_fail_closed, check_records
from otel_audit import schema

JOB = REPO / "tests" / "scripts" / "model_files_job.py"


def test_every_call_is_one_record_naming_the_call(tmp_path):
    check_records(JOB, tmp_path, count=18)


def test_fail_closed_refuses_each_call_before_it_touches_the_file(tmp_path):
    # every call refused but the one on bytes in memory (no file)
    check_fail_closed(JOB, tmp_path, outcomes=["refused"] * 7 + ["PROCEEDED"] + ["refused"] * 11)


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
