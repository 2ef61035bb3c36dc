"""os-level, pyarrow and pandas-writer access points: one record per user-level call and resource.

Each job in ``tests/scripts`` runs plainly and under the real ``opentelemetry-instrument``
(same output; exactly the records its comments name, field by field: see ``tests/jobs.py``), and
once more fail-closed with a spool that cannot be written: every call refused, nothing touched.
"""

from __future__ import annotations

import pickle

import pytest

from conftest import REPO
from jobs import check_fail_closed, check_records
from otel_audit import schema
from otel_audit.recorder import exception_type_name

SCRIPTS = REPO / "tests" / "scripts"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the hub snapshot huggingface_job.py lays out
OS_JOB = SCRIPTS / "os_job.py"


def test_os_level_calls_are_one_record_per_resource_and_library_scratch_work_none(tmp_path):
    check_records(OS_JOB, tmp_path, count=30)


def test_os_level_calls_are_refused_fail_closed_before_they_touch_anything(tmp_path):
    check_fail_closed(OS_JOB, tmp_path, outcomes=["refused"] * 23)


PYARROW_JOB = SCRIPTS / "pyarrow_job.py"


def test_pyarrow_and_pandas_writers_are_one_record_per_call_naming_it(tmp_path):
    check_records(PYARROW_JOB, tmp_path, count=37)


def test_pyarrow_and_pandas_writers_are_refused_fail_closed_before_they_touch_anything(tmp_path):
    # every call refused but df.to_csv() with no path (no file; it returns the text)
    check_fail_closed(PYARROW_JOB, tmp_path, outcomes=["refused"] * 33 + ["PROCEEDED", "refused"])


def test_failures_raise_exactly_what_they_raise_without_us_and_are_failure_records(audited, tmp_path):
    import os

    import pyarrow.parquet as pq

    missing = tmp_path / "missing.parquet"
    with pytest.raises(FileNotFoundError) as plain_os:
        os.remove.__wrapped__(missing)
    with pytest.raises(Exception) as plain_pq:
        pq.read_table.__wrapped__(missing)
    audited.clear()
    with pytest.raises(FileNotFoundError) as raised_os:
        os.remove(missing)
    with pytest.raises(type(plain_pq.value)) as raised_pq:
        pq.read_table(missing)
    assert (raised_os.value.errno, raised_os.value.filename, str(raised_os.value)) == (
        plain_os.value.errno, plain_os.value.filename, str(plain_os.value))
    assert str(raised_pq.value) == str(plain_pq.value)
    records = [r["attributes"] for r in audited.records()]
    assert [(a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME], a[schema.ERROR_TYPE]) for a in records] == [
        ("os.remove", "delete", "failure", "FileNotFoundError"),
        ("pyarrow.parquet.read_table", "read", "failure", exception_type_name(plain_pq.value)),
    ]
    assert all(a[schema.AUDIT_RESOURCE_URI] == missing.as_uri() for a in records)


def test_patched_functions_and_classes_pickle_by_reference_and_stay_classes(audited, tmp_path):
    import os
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    for patched in (os.remove, os.listdir, shutil.rmtree, pq.read_table, pq.ParquetFile, pa.OSFile, pa.memory_map):
        assert type(patched).__name__ == "AuditedFunction"
        assert pickle.loads(pickle.dumps(patched)) is patched
        assert b"otel_audit" not in pickle.dumps(patched)
    table = pa.table({"a": [1]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert isinstance(pq.ParquetFile(tmp_path / "t.parquet"), pq.ParquetFile)

    class Writer(pq.ParquetWriter):  # subclassing a patched class still makes a subclass of the class
        pass

    with Writer(tmp_path / "sub.parquet", table.schema) as writer:
        writer.write_table(table)
    assert issubclass(Writer, pq.ParquetWriter.__wrapped__)
    assert pq.read_table(tmp_path / "sub.parquet").num_rows == 1


HUGGINGFACE_JOB = SCRIPTS / "huggingface_job.py"


def test_hugging_face_calls_are_one_record_each_listing_the_files_they_opened(tmp_path):
    records = check_records(HUGGINGFACE_JOB, tmp_path, count=9)
    by_call = {(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_RESOURCE_URI].rpartition("/")[2]): r["attributes"]
               for r in records}
    assert len(by_call) == 9  # each call its own record
    local = by_call[("transformers.AutoModel.from_pretrained", "model")]
    assert local[schema.AUDIT_RESOURCE_FILES] == ["config.json", "model.safetensors"]
    assert schema.AUDIT_RESOURCE_REVISION not in local and schema.AUDIT_RESOURCE_VERSION not in local
    assert by_call[("transformers.AutoTokenizer.from_pretrained", "model")][schema.AUDIT_RESOURCE_FILES] == [
        "config.json", "tokenizer_config.json", "tokenizer.json"]
    hub = by_call[("transformers.AutoModel.from_pretrained", "tiny")]
    assert (hub[schema.AUDIT_RESOURCE_REVISION], hub[schema.AUDIT_RESOURCE_VERSION]) == ("main", COMMIT)
    # what huggingface_hub read to resolve main, then the snapshot's files, named relative to the snapshot
    refs, *files = hub[schema.AUDIT_RESOURCE_FILES]
    assert refs.startswith(f"{tmp_path}/audited-") and refs.endswith("/hub/models--org--tiny/refs/main"), refs
    assert files == ["config.json", "model.safetensors"]
    download = by_call[("huggingface_hub.hf_hub_download", "config.json")]
    assert (download[schema.AUDIT_RESOURCE_VERSION], download[schema.AUDIT_RESOURCE_FILES]) == (COMMIT, ["config.json"])
    snapshot = by_call[("huggingface_hub.snapshot_download", "tiny")]
    assert (snapshot[schema.AUDIT_RESOURCE_REVISION], snapshot[schema.AUDIT_RESOURCE_VERSION]) == ("main", COMMIT)
    saved = by_call[("transformers.BertModel.save_pretrained", "saved")]
    assert saved[schema.AUDIT_RESOURCE_FILES] == ["config.json", "model.safetensors"]


def test_hugging_face_calls_are_refused_fail_closed_before_they_touch_anything(tmp_path):
    check_fail_closed(HUGGINGFACE_JOB, tmp_path, outcomes=["refused"] * 9)
