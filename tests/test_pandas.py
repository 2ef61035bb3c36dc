"""pandas read_*: one record per call (pandas' own open() is not recorded again), buffers keep working."""

from __future__ import annotations

import io
import pathlib
import sys

import pandas as pd
import pandas.testing as pdt
import pytest

from otel_audit import schema

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["x", "y", "z"]})


def _write(kind: str, path: pathlib.Path) -> None:
    """Write FRAME in the reader's format; runs before the test clears the records."""
    if kind == "csv":
        FRAME.to_csv(path, index=False)
    elif kind == "table":
        FRAME.to_csv(path, index=False, sep="\t")
    elif kind == "fwf":
        path.write_text("a  b    c\n1  0.5  x\n2  1.5  y\n3  2.5  z\n")
    elif kind == "json":
        FRAME.to_json(path)
    elif kind == "parquet":
        FRAME.to_parquet(path)
    elif kind == "feather":
        FRAME.to_feather(path)
    elif kind == "orc":
        FRAME.to_orc(path)
    elif kind == "excel":
        FRAME.to_excel(path, index=False)
    elif kind == "pickle":
        FRAME.to_pickle(path)
    elif kind == "hdf":
        FRAME.to_hdf(path, key="frame")
    elif kind == "stata":
        FRAME.to_stata(path, write_index=False)
    elif kind == "spss":
        import pyreadstat

        pyreadstat.write_sav(FRAME, str(path))
    elif kind == "xml":
        FRAME.to_xml(path, index=False)
    elif kind == "html":
        FRAME.to_html(path, index=False)
    elif kind == "sas":
        import pyreadstat  # pandas cannot write SAS; pyreadstat writes the XPORT format

        pyreadstat.write_xport(FRAME, str(path), file_format_version=5)  # the version pandas reads
    else:
        raise AssertionError(kind)


READERS = [
    # (reader, file name, extra kwargs)
    ("read_csv", "data.csv", {}),
    ("read_table", "data.tsv", {}),
    ("read_fwf", "data.txt", {}),
    ("read_json", "data.json", {}),
    ("read_parquet", "data.parquet", {}),
    ("read_feather", "data.feather", {}),
    ("read_orc", "data.orc", {}),
    ("read_excel", "data.xlsx", {}),
    ("read_pickle", "data.pkl", {}),
    ("read_hdf", "data.h5", {"key": "frame"}),
    ("read_stata", "data.dta", {}),
    ("read_sas", "data.xpt", {"format": "xport", "encoding": None}),
    ("read_spss", "data.sav", {}),
    ("read_xml", "data.xml", {}),
    ("read_html", "data.html", {}),
]


@pytest.mark.parametrize("reader, name, kwargs", READERS, ids=[r[0] for r in READERS])
def test_every_reader_one_record(audited, tmp_path, reader, name, kwargs):
    path = tmp_path / name
    _write(reader.removeprefix("read_"), path)
    read = getattr(pd, reader)
    expected = read.__wrapped__(path, **kwargs)  # pandas' own function, not our wrapper
    audited.clear()

    result = read(str(path), **kwargs); line = sys._getframe().f_lineno  # noqa: E702

    # the instrumented reader returns exactly what the plain one does
    if isinstance(expected, list):  # read_html
        assert len(result) == len(expected)
        for got, want in zip(result, expected):
            pdt.assert_frame_equal(got, want)
    else:
        pdt.assert_frame_equal(result, expected)
    records = audited.records()
    assert len(records) == 1, [r["body"] for r in records]
    a = records[0]["attributes"]
    assert a[schema.AUDIT_API] == f"pandas.{reader}"
    assert a[schema.AUDIT_ACTION] == "read"
    assert a[schema.AUDIT_OUTCOME] == "success"
    assert a[schema.AUDIT_RESOURCE_URI] == f"file://{path}"
    assert a[schema.AUDIT_RESOURCE_TYPE] == "data"
    assert a[schema.FILE_PATH] == str(path)
    assert a[schema.FILE_SIZE] == path.stat().st_size
    assert a[schema.CODE_FILE_PATH] == __file__
    assert a[schema.CODE_LINE_NUMBER] == line
    assert schema.AUDIT_MODE not in a


def test_pathlib_argument(audited, tmp_path):
    path = tmp_path / "p.csv"
    FRAME.to_csv(path, index=False)
    audited.clear()
    pd.read_csv(path)
    assert [r["attributes"][schema.AUDIT_RESOURCE_URI] for r in audited.records()] == [f"file://{path}"]


@pytest.mark.parametrize("make_buffer", [lambda b: io.BytesIO(b), lambda b: io.StringIO(b.decode())])
def test_buffers_work_and_are_not_recorded(audited, make_buffer):
    data = FRAME.to_csv(index=False).encode()
    audited.clear()
    pdt.assert_frame_equal(pd.read_csv(make_buffer(data)), FRAME)
    assert audited.all_records() == []


def test_literal_documents_are_not_paths(audited):
    html = FRAME.to_html(index=False)
    json_text = FRAME.to_json()
    audited.clear()
    assert len(pd.read_html(io.StringIO(html))) == 1
    pdt.assert_frame_equal(pd.read_json(io.StringIO(json_text)), FRAME)
    # A literal document string: older pandas parse it (deprecated), pandas 3 takes it for a
    # missing path.  Either way the call behaves as without us and it is no file to record.
    for reader, literal in ((pd.read_html, html), (pd.read_json, json_text)):
        try:
            expected = ("returned", type(reader.__wrapped__(literal)))
        except Exception as exc:
            expected = ("raised", type(exc))
        try:
            got = ("returned", type(reader(literal)))
        except Exception as exc:
            got = ("raised", type(exc))
        assert got == expected
    # pandas 3 does try to open the "path", and that failed open() is on record; no pandas.* record.
    assert {(r["attributes"][schema.AUDIT_API], r["attributes"][schema.AUDIT_OUTCOME]) for r in audited.all_records()} <= {
        ("builtins.open", "failure")}


def test_open_file_handle_recorded_once_by_open(audited, tmp_path):
    path = tmp_path / "h.csv"
    FRAME.to_csv(path, index=False)
    audited.clear()
    with open(path) as handle:
        pd.read_csv(handle)
    records = audited.records()
    assert [r["attributes"][schema.AUDIT_API] for r in records] == ["builtins.open"]


def test_missing_file_failure_same_exception(audited, tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError) as plain:
        pd.read_csv(tmp_path / "other-missing.csv")
    audited.clear()
    with pytest.raises(FileNotFoundError) as raised:
        pd.read_parquet(missing)
    assert str(missing) in str(raised.value)
    assert type(plain.value) is type(raised.value)
    records = audited.records()
    assert len(records) == 1
    a = records[0]["attributes"]
    assert (a[schema.AUDIT_API], a[schema.AUDIT_OUTCOME], a[schema.ERROR_TYPE]) == (
        "pandas.read_parquet", "failure", "FileNotFoundError")


def test_chunked_reader_is_one_record(audited, tmp_path):
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": range(1000)}).to_csv(path, index=False)
    audited.clear()
    with pd.read_csv(path, chunksize=100) as chunks:
        assert sum(len(c) for c in chunks) == 1000
    assert len(audited.records()) == 1


def test_file_url_is_the_file(audited, tmp_path):
    path = tmp_path / "u.csv"
    FRAME.to_csv(path, index=False)
    audited.clear()
    pd.read_csv(path.as_uri())
    a = audited.records()[0]["attributes"]
    assert a[schema.AUDIT_RESOURCE_URI] == f"file://{path}" and a[schema.FILE_PATH] == str(path)


def test_pandas_warnings_still_name_the_callers_line(audited, tmp_path):
    import warnings

    path = tmp_path / "data.xpt"
    _write("sas", path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pd.read_sas(path, format="xport"); line = sys._getframe().f_lineno  # noqa: E702
    deprecations = [w for w in caught if "encoding" in str(w.message)]
    assert deprecations, [str(w.message) for w in caught]
    assert (deprecations[0].filename, deprecations[0].lineno) == (__file__, line)
