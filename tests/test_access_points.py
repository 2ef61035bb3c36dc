"""os-level, pyarrow and pandas-writer access points: one record per user-level call and resource.

Each job in ``tests/scripts`` runs plainly and under the real ``opentelemetry-instrument``
(same output; exactly the records its comments name, field by field: see ``tests/jobs.py``), and
once more fail-closed with a spool that cannot be written: every call refused, nothing touched.
"""

from __future__ import annotations

import pickle
import sys

import pytest

from conftest import REPO, instrumented_env, otel_audit_lines, run_instrumented
from jobs import check_fail_closed, check_records
from otel_audit import schema
from otel_audit.config import AuditConfig
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
    check_records(PYARROW_JOB, tmp_path, count=67)


def test_pyarrow_and_pandas_writers_are_refused_fail_closed_before_they_touch_anything(tmp_path):
    # every call refused but a get_file_info of a path (metadata, not recorded) and df.to_csv() with no
    # path (no file; it returns the text)
    check_fail_closed(PYARROW_JOB, tmp_path, outcomes=["refused"] * 30 + ["PROCEEDED"] + ["refused"] * 13
                      + ["PROCEEDED", "refused"])


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


def test_patched_functions_pickle_by_reference_and_patched_classes_stay_themselves(audited, tmp_path):
    import os
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    for patched in (os.remove, os.listdir, shutil.rmtree, pq.read_table, pa.memory_map, pa.OSFile):
        assert type(patched).__name__ == "AuditedFunction"
        assert pickle.loads(pickle.dumps(patched)) is patched
        assert b"otel_audit" not in pickle.dumps(patched)
    # A Python class is patched in its constructor, not replaced: it is itself, its instances pickle
    # (Dask and Ray ship ParquetDatasets, joblib memmaps), and a subclass of it is recorded when made.
    for cls in (pq.ParquetFile, pq.ParquetDataset, pq.ParquetWriter, np.memmap):
        assert type(cls) is type and cls.__module__.startswith(("pyarrow", "numpy"))
    table = pa.table({"a": [1, 2]})
    pq.write_table(table, tmp_path / "t.parquet")
    np.arange(3).tofile(tmp_path / "m.bin")
    dataset = pq.ParquetDataset(tmp_path / "t.parquet")
    mapped = np.memmap(tmp_path / "m.bin", dtype=np.int64, mode="r")
    assert type(mapped) is np.memmap and type(pq.ParquetFile(tmp_path / "t.parquet")) is pq.ParquetFile
    assert pickle.loads(pickle.dumps(dataset)).read().num_rows == 2
    assert pickle.loads(pickle.dumps(mapped)).tolist() == [0, 1, 2]
    assert b"otel_audit" not in pickle.dumps(dataset) + pickle.dumps(mapped)
    audited.clear()

    class Writer(pq.ParquetWriter):
        pass

    with Writer(tmp_path / "sub.parquet", table.schema) as writer:
        writer.write_table(table)
    line = sys._getframe().f_lineno - 2
    (record,) = audited.records()
    assert (record["attributes"][schema.AUDIT_API], record["attributes"][schema.CODE_LINE_NUMBER],
            record["attributes"][schema.AUDIT_RESOURCE_URI]) == (
        "pyarrow.parquet.ParquetWriter", line, (tmp_path / "sub.parquet").as_uri())
    # a C type's constructor cannot be patched: its name is wrapped, and it still is the class for isinstance
    with pa.OSFile(str(tmp_path / "m.bin")) as handle:
        assert isinstance(handle, pa.OSFile)


def test_methods_set_on_immutable_c_types_pickle_as_before_and_leave_the_types_immutable(audited, tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    dataset = ds.dataset(tmp_path / "t.parquet")
    array = np.arange(3)
    for cls, method in ((np.ndarray, "tofile"), (ds.Dataset, "to_table"), (ds.Scanner, "from_dataset"),
                        (pafs.FileSystem, "open_input_file")):
        assert type(vars(cls)[method]).__name__ == "AuditedFunction"
        with pytest.raises(TypeError, match="immutable"):  # the flag was lifted for the assignment only
            setattr(cls, "anything", 1)
        assert b"otel_audit" not in pickle.dumps(getattr(cls, method))
    # got from the class or bound to an instance, they pickle as the methods they replace did
    pickle.loads(pickle.dumps(np.ndarray.tofile))(array, str(tmp_path / "a.raw"))
    pickle.loads(pickle.dumps(array.tofile))(str(tmp_path / "b.raw"))
    assert pickle.loads(pickle.dumps(ds.Dataset.to_table))(dataset).num_rows == 2
    assert pickle.loads(pickle.dumps(dataset.count_rows))() == 2
    # an unpickled dataset, which remembers no source, reads its files
    audited.clear()
    assert pickle.loads(pickle.dumps(dataset)).to_table().num_rows == 2
    (record,) = audited.records()
    assert (record["attributes"][schema.AUDIT_API], record["attributes"][schema.AUDIT_RESOURCE_URI]) == (
        "pyarrow.dataset.Dataset.to_table", (tmp_path / "t.parquet").as_uri())



def test_io_fileio_stays_itself_and_only_the_users_own_calls_are_its_records(audited, tmp_path):
    import inspect
    import io
    import os
    import sysconfig

    path = tmp_path / "raw.bin"
    path.write_bytes(b"0123456789")
    # the same class, the same signature; open() still makes exactly an io.FileIO
    assert inspect.signature(io.FileIO) == inspect.Signature([
        inspect.Parameter("file", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
          for name, default in (("mode", "r"), ("closefd", True), ("opener", None)))])
    with pytest.raises(TypeError, match="immutable"):
        io.FileIO.anything = 1
    with open(path, "rb") as handle:
        assert type(handle.raw) is io.FileIO and handle.read() == b"0123456789"

    class Raw(io.FileIO):
        pass

    # made from a standard-library module's code: a library's own call, not the user's
    library = {}
    exec(compile("import io\ndef make(path):\n    return io.FileIO(path)\n",
                 os.path.join(sysconfig.get_paths()["stdlib"], "made_up_library.py"), "exec"), library)
    missing = tmp_path / "missing.bin"
    audited.clear()
    with io.FileIO(path, "r+") as raw:  # the user's call: one record
        line_write = sys._getframe().f_lineno - 1
        assert raw.read(4) == b"0123"
    with Raw(str(path)) as raw:  # a subclass made by the user: recorded too
        line_sub = sys._getframe().f_lineno - 1
        assert isinstance(raw, io.FileIO) and raw.readall() == b"0123456789"
    with pytest.raises(FileNotFoundError) as raised:
        io.FileIO(missing)
    line_missing = sys._getframe().f_lineno - 1
    descriptor = os.open(path, os.O_RDONLY)  # os.open's own record
    io.FileIO(descriptor).close()  # a descriptor names no file: no record
    library["make"](str(path)).close()  # no record
    with open(path, "rb"):  # open()'s record only, not also the FileIO it makes
        line_open = sys._getframe().f_lineno - 1
    # what FileIO itself raises, the path object it was given included
    assert (type(raised.value), raised.value.errno, raised.value.filename) == (FileNotFoundError, 2, missing)
    records = [r["attributes"] for r in audited.records()]
    assert [(a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME], a[schema.AUDIT_RESOURCE_URI],
             a[schema.CODE_LINE_NUMBER], a.get(schema.FILE_SIZE)) for a in records] == [
        ("io.FileIO", "write", "success", path.as_uri(), line_write, None),
        ("io.FileIO", "read", "success", path.as_uri(), line_sub, 10),
        ("io.FileIO", "read", "failure", missing.as_uri(), line_missing, None),
        ("os.open", "read", "success", path.as_uri(), line_missing + 2, 10),
        ("builtins.open", "read", "success", path.as_uri(), line_open, 10),
    ]
    assert {a[schema.CODE_FILE_PATH] for a in records} == {__file__}


HUGGINGFACE_JOB = SCRIPTS / "huggingface_job.py"


def test_hugging_face_calls_are_one_record_each_listing_the_files_they_opened(tmp_path):
    records = check_records(HUGGINGFACE_JOB, tmp_path, count=12)
    by_call = {(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_RESOURCE_URI].rpartition("/")[2]): r["attributes"]
               for r in records}
    assert len(by_call) == 12  # each call its own record
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
    assert by_call[("transformers.AutoImageProcessor.from_pretrained", "processor")][schema.AUDIT_RESOURCE_FILES] == [
        "preprocessor_config.json"]
    saved = by_call[("transformers.BertModel.save_pretrained", "saved")]
    assert saved[schema.AUDIT_RESOURCE_FILES] == ["config.json", "model.safetensors"]


def test_hugging_face_calls_are_refused_fail_closed_before_they_touch_anything(tmp_path):
    check_fail_closed(HUGGINGFACE_JOB, tmp_path, outcomes=["refused"] * 12)


DATA_FILES_JOB = SCRIPTS / "data_files_job.py"


def test_polars_h5py_pillow_sqlite_and_pandas_sql_are_one_record_per_call_and_resource(tmp_path):
    records = check_records(DATA_FILES_JOB, tmp_path, count=26)
    sql = [r["attributes"] for r in records if r["attributes"][schema.AUDIT_API].startswith("pandas.")]
    assert [(a[schema.AUDIT_API], a.get(schema.DB_COLLECTION_NAME)) for a in sql] == [
        ("pandas.read_sql", None), ("pandas.DataFrame.to_sql", "scores")]  # a query is never recorded, a table is
    assert not any("SELECT" in str(value) for r in records for value in r["attributes"].values())


def test_polars_h5py_pillow_sqlite_and_pandas_sql_are_refused_fail_closed(tmp_path):
    # every call refused but write_csv() with no file (it returns the text) and an eager filter (no file)
    check_fail_closed(DATA_FILES_JOB, tmp_path, outcomes=["refused"] * 13 + ["PROCEEDED"] * 2 + ["refused"] * 6)


FSSPEC_JOB = SCRIPTS / "fsspec_job.py"


def test_fsspec_filesystems_are_one_record_per_call_and_path(tmp_path):
    check_records(FSSPEC_JOB, tmp_path, count=16)


def test_fsspec_filesystems_are_refused_fail_closed(tmp_path):
    check_fail_closed(FSSPEC_JOB, tmp_path, outcomes=["refused"] * 14)


def test_fsspec_http_filesystem_against_a_local_server_one_record_per_call(audited):
    import http.server
    import threading

    import fsspec

    body = b"a,b\n1,2\n"

    class Handler(http.server.BaseHTTPRequestHandler):  # serves from memory: no file of its own is opened
        def do_GET(self):  # noqa: N802 - the http.server name
            if self.path.partition("?")[0] != "/data/a.csv":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data/a.csv?token=secret"
        http_fs = fsspec.filesystem("http", skip_instance_cache=True)
        assert http_fs.cat_file(url) == body; first = sys._getframe().f_lineno  # noqa: E702
        with http_fs.open(url, "rb") as handle:
            assert handle.read() == body
        second = sys._getframe().f_lineno - 2
        with pytest.raises(FileNotFoundError):
            http_fs.cat_file(url.replace("a.csv", "missing.csv"))
        third = sys._getframe().f_lineno - 1
    finally:
        server.shutdown()
    records = [r["attributes"] for r in audited.records()]
    clean = url.replace("token=secret", "token=REDACTED")  # query values are secrets
    assert [(a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_RESOURCE_URI], a[schema.AUDIT_OUTCOME],
             a[schema.CODE_LINE_NUMBER]) for a in records] == [
        ("fsspec.HTTPFileSystem.cat_file", "read", clean, "success", first),
        ("fsspec.HTTPFileSystem.open", "read", clean, "success", second),
        ("fsspec.HTTPFileSystem.cat_file", "read", clean.replace("a.csv", "missing.csv"), "failure", third),
    ]
    assert records[2][schema.ERROR_TYPE] == "FileNotFoundError"


IMPORTS = """
import abc, io, _pyio  # _pyio registers _io.FileIO with its own ABC: a proxy in its place breaks the import
import dill, datasets, fsspec, h5py, numpy, pandas, polars, safetensors, sqlite3, torch, transformers
import PIL.Image, pyarrow.csv, pyarrow.dataset, pyarrow.feather, pyarrow.ipc, pyarrow.json, pyarrow.orc, pyarrow.parquet
assert issubclass(io.FileIO, _pyio.RawIOBase)
assert type(numpy.memmap) is type and type(pyarrow.parquet.ParquetFile) is type
print("imported")
"""


def test_every_instrumented_library_imports_and_keeps_its_classes_under_otel_audit(tmp_path):
    script = tmp_path / "imports.py"
    script.write_text(IMPORTS)
    result = run_instrumented(script, cwd=tmp_path, env=instrumented_env(OTEL_LOGS_EXPORTER="none"))
    assert (result.returncode, result.stdout) == (0, "imported\n"), result.stderr
    assert [line for line in otel_audit_lines(result.stderr) if "OTEL_LOGS_EXPORTER" not in line] == []


DATASETS_JOB = SCRIPTS / "datasets_job.py"


def test_datasets_calls_are_one_record_per_data_source_with_the_cache_location(tmp_path):
    records = [r["attributes"] for r in check_records(DATASETS_JOB, tmp_path, count=8)]
    loads = [a for a in records if a[schema.AUDIT_API] == "datasets.load_dataset"]
    assert len(loads) == 3
    for a in loads:  # the cache the result lives in, under HF_DATASETS_CACHE
        assert a[schema.AUDIT_CACHE_LOCATION].startswith(f"{tmp_path}/audited-") and "/cache/csv/" in a[schema.AUDIT_CACHE_LOCATION]
        assert any(name.endswith(".arrow") for name in a[schema.AUDIT_RESOURCE_FILES])  # what it wrote there
    saved = next(a for a in records if a[schema.AUDIT_API] == "datasets.Dataset.save_to_disk")
    assert set(saved[schema.AUDIT_RESOURCE_FILES]) >= {"state.json", "dataset_info.json"}


def test_datasets_calls_are_refused_fail_closed(tmp_path):
    check_fail_closed(DATASETS_JOB, tmp_path, outcomes=["refused"] * 7)


def test_work_an_audited_call_hands_to_a_thread_pool_is_folded_into_its_record(audited, tmp_path):
    import concurrent.futures

    import otel_audit

    (tmp_path / "part.txt").write_text("p")
    audited.clear()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        with otel_audit.audit_access("s3://bucket/whole", "read", api="job.load"):
            assert list(pool.map(lambda _: (tmp_path / "part.txt").read_text(), range(3))) == ["p"] * 3
        assert pool.submit(lambda: (tmp_path / "part.txt").read_text()).result() == "p"  # outside: its own record
    assert [(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_RESOURCE_URI]) for r in audited.records()] == [
        ("job.load", "s3://bucket/whole"), ("builtins.open", (tmp_path / "part.txt").as_uri())]


def test_a_pandas_sql_url_is_recorded_without_its_credentials(audited):
    import json

    import pandas as pd

    url = "postgresql://alice:s3cret@db.example:5432/prod?sslpassword=hunter2"
    with pytest.raises(Exception) as plain:  # no SQLAlchemy here: pandas says so, with or without us
        pd.read_sql_table.__wrapped__("patients", url)
    audited.clear()
    with pytest.raises(type(plain.value)) as raised:
        pd.read_sql_table("patients", url)
    assert str(raised.value) == str(plain.value)
    (record,) = audited.records()
    attrs = record["attributes"]
    assert (attrs[schema.AUDIT_API], attrs[schema.AUDIT_ACTION], attrs[schema.AUDIT_OUTCOME]) == (
        "pandas.read_sql_table", "read", "failure")
    assert attrs[schema.AUDIT_RESOURCE_URI] == "postgresql://db.example:5432/prod?sslpassword=REDACTED"
    assert attrs[schema.DB_COLLECTION_NAME] == "patients"
    dumped = json.dumps(record, default=str)
    assert "s3cret" not in dumped and "hunter2" not in dumped and "alice:" not in dumped


def test_io_fileio_patched_again_is_not_wrapped_twice_and_is_restored():
    import io

    from otel_audit.hooks import os_hook
    from otel_audit.instrumentor import AuditInstrumentor

    instrumentor = AuditInstrumentor()
    instrumentor.instrument(config=AuditConfig(delivery="memory", hooks=("os",)))
    try:
        first = vars(io.FileIO)["__init__"]
        os_hook.ACCESS_POINT._on_import("io", io)  # the module's patch run again, as a second install does
        assert vars(io.FileIO)["__init__"] is first
    finally:
        instrumentor.uninstrument()
    assert type(vars(io.FileIO)["__init__"]).__name__ == "wrapper_descriptor"
