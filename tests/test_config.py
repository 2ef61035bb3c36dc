"""OTEL_PYTHON_AUDIT_* parsing, clear errors, and what include/exclude globs and model extensions do."""

from __future__ import annotations

import os

import pytest

from conftest import audited_pipeline
from otel_audit import schema
from otel_audit.config import DEFAULT_MODEL_EXTENSIONS, HOOK_NAMES, AuditConfig, ConfigError


def test_defaults():
    config = AuditConfig.from_env({})
    assert config.hooks == HOOK_NAMES
    assert config.include_paths == () and config.exclude_paths == ()
    assert config.model_extensions == DEFAULT_MODEL_EXTENSIONS
    assert config.file == "./otel-audit.jsonl"
    assert config.errors == ()


def test_values_are_parsed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = AuditConfig.from_env({
        "OTEL_PYTHON_AUDIT_HOOKS": " pandas , OPEN ",
        "OTEL_PYTHON_AUDIT_INCLUDE_PATHS": "/data/*, relative/*.csv,, s3://bucket/*",
        "OTEL_PYTHON_AUDIT_EXCLUDE_PATHS": "~/scratch/*",
        "OTEL_PYTHON_AUDIT_MODEL_EXTENSIONS": "PT, .bin",
        "OTEL_PYTHON_AUDIT_FILE": "/var/log/audit.jsonl",
    })
    assert config.hooks == ("open", "pandas")
    assert config.include_paths == ("/data/*", f"{tmp_path}/relative/*.csv", "s3://bucket/*")
    assert config.exclude_paths == (os.path.expanduser("~/scratch/*"),)
    assert config.model_extensions == (".pt", ".bin")
    assert config.file == "/var/log/audit.jsonl"
    durable = AuditConfig.from_env({
        "OTEL_PYTHON_AUDIT_DELIVERY": "Memory", "OTEL_PYTHON_AUDIT_SPOOL_DIR": "spool",
        "OTEL_PYTHON_AUDIT_SPOOL_FSYNC": "always", "OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES": "512M",
        "OTEL_PYTHON_AUDIT_ON_FAILURE": "closed", "OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT": "2.5",
    })
    assert (durable.delivery, durable.spool_dir, durable.spool_fsync) == ("memory", f"{tmp_path}/spool", "always")
    assert (durable.spool_max_bytes, durable.on_failure, durable.shutdown_timeout) == (512 << 20, "closed", 2.5)


@pytest.mark.parametrize("name, value, accepted", [
    ("OTEL_PYTHON_AUDIT_HOOKS", "open,pandsa",
     "unknown hook 'pandsa'; accepted: 'all' or comma-separated names from open, os, pandas, pyarrow, polars, numpy, h5py, pillow, sqlite3, torch, safetensors, huggingface, datasets, fsspec, joblib, boto3"),
    ("OTEL_PYTHON_AUDIT_MODEL_EXTENSIONS", ".pt,model/x",
     "'.model/x' is not a file extension; accepted: comma-separated extensions such as .pt,.onnx"),
    ("OTEL_PYTHON_AUDIT_FILE", "  ", "an empty path; accepted: a file path"),
    ("OTEL_PYTHON_AUDIT_DELIVERY", "durabel", "not a known value; accepted: durable, memory"),
    ("OTEL_PYTHON_AUDIT_SPOOL_FSYNC", "sometimes", "not a known value; accepted: never, batch, always"),
    ("OTEL_PYTHON_AUDIT_ON_FAILURE", "shut", "not a known value; accepted: open, closed"),
    ("OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES", "64k",
     "not a size from 1 MiB to 1 EiB; accepted: bytes, or a number with k, M or G (e.g. 512M)"),
    ("OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES", "lots",
     "not a size from 1 MiB to 1 EiB; accepted: bytes, or a number with k, M or G (e.g. 512M)"),
    ("OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES", "1e309",  # inf: an OverflowError once switched auditing off
     "not a size from 1 MiB to 1 EiB; accepted: bytes, or a number with k, M or G (e.g. 512M)"),
    ("OTEL_PYTHON_AUDIT_SPOOL_MAX_BYTES", "nan",
     "not a size from 1 MiB to 1 EiB; accepted: bytes, or a number with k, M or G (e.g. 512M)"),
    ("OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT", "1e309",
     "not a number of seconds in range; accepted: a number from 0 to 3600"),
    ("OTEL_PYTHON_AUDIT_FILE", "/", "a directory; accepted: a file path (the trail file in it, e.g. "
     "DIR/otel-audit.jsonl)"),
    ("OTEL_PYTHON_AUDIT_SPOOL_DIR", "/etc/hostname", "not a directory; accepted: a directory path (created if missing)"),
    ("OTEL_PYTHON_AUDIT_REDACT", "ok,(unclosed",
     "'(unclosed' is not a regular expression (missing ), unterminated subpattern at position 0); accepted: "
     "comma-separated Python regular expressions (a comma inside one written \\,)"),
    ("OTEL_PYTHON_AUDIT_SHUTDOWN_TIMEOUT", "forever",
     "not a number of seconds in range; accepted: a number from 0 to 3600"),
    ("OTEL_PYTHON_AUDIT_SPOOL_DIR", "", "an empty path; accepted: a directory path"),
])
def test_bad_value_names_variable_value_and_accepted(name, value, accepted, capsys):
    from otel_audit import diagnostics

    diagnostics._forget()
    with pytest.raises(ConfigError) as raised:
        AuditConfig.from_env({name: value}, strict=True)
    message = f"{name}={value!r} is not accepted: {accepted}. Using the default"
    assert str(raised.value).startswith(message)
    config = AuditConfig.from_env({name: value})  # lenient: reported once, default used
    assert config == AuditConfig()
    assert capsys.readouterr().err.startswith(f"otel-audit: {message}")
    AuditConfig.from_env({name: value})
    assert capsys.readouterr().err == ""  # once


def _uris(pipeline):
    return [r["attributes"][schema.AUDIT_RESOURCE_URI] for r in pipeline.all_records()]


def test_exclude_globs(tmp_path):
    (tmp_path / "keep.csv").write_text("k")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "tmp.csv").write_text("t")
    with audited_pipeline(tmp_path, AuditConfig(exclude_paths=(f"{tmp_path}/scratch/*",))) as pipeline:
        open(tmp_path / "keep.csv").close()
        open(tmp_path / "scratch" / "tmp.csv").close()
        assert _uris(pipeline) == [f"file://{tmp_path}/keep.csv"]


def test_verdicts_kept_per_path_give_the_same_answers_again_and_relative_paths_follow_the_cwd(tmp_path, monkeypatch):
    """The policy keeps its verdict per absolute path (the excluded access's fast path): asked again, the
    same answers; a relative path is judged anew where the program is now; the cache stays bounded."""
    from otel_audit.resources import VERDICTS_KEPT, ResourcePolicy

    for d in ("scratch", "data"):
        (tmp_path / d).mkdir()
    policy = ResourcePolicy(AuditConfig(exclude_paths=(f"{tmp_path}/scratch/*",)))
    for _ in range(3):
        assert policy.describe_path(f"{tmp_path}/scratch/x.csv") is None
        assert policy.describe_path(f"{tmp_path}/data/../scratch/y.csv") is None  # normalised before judged
        kept = policy.describe_path(f"{tmp_path}/data/./x.csv")
        assert kept[schema.FILE_PATH] == f"{tmp_path}/data/x.csv"
        kept[schema.FILE_PATH] = "changed by a hook"  # each answer is a new dict
    monkeypatch.chdir(tmp_path / "scratch")
    assert policy.describe_path("x.csv") is None
    monkeypatch.chdir(tmp_path / "data")
    assert policy.describe_path("x.csv")[schema.AUDIT_RESOURCE_URI] == f"file://{tmp_path}/data/x.csv"
    # the name is kept, but a weights file's type is looked at anew: a config.json may appear beside it
    weights = tmp_path / "data" / "pytorch_model.bin"
    assert policy.describe_path(str(weights))[schema.AUDIT_RESOURCE_TYPE] == schema.TYPE_DATA
    (tmp_path / "data" / "config.json").write_text("{}")
    policy._configs_seen.clear()  # (the directory's answer is kept a second)
    assert policy.describe_path(str(weights))[schema.AUDIT_RESOURCE_TYPE] == schema.TYPE_MODEL
    assert policy.describe_path(str(weights), schema.TYPE_DATA)[schema.AUDIT_RESOURCE_URI] == weights.as_uri()
    assert policy.describe_path(f"{tmp_path}/data/x.csv", schema.TYPE_MODEL)[schema.AUDIT_RESOURCE_TYPE] == "model"
    for n in range(VERDICTS_KEPT + 5):
        policy.describe_path(f"{tmp_path}/data/{n}.csv")
    assert len(policy._verdicts) <= VERDICTS_KEPT
    assert policy.describe_path(f"{tmp_path}/scratch/x.csv") is None


def test_include_globs_are_an_allow_list_and_override_default_exclusions(tmp_path):
    (tmp_path / "a.csv").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    config = AuditConfig(include_paths=(f"{tmp_path}/*.csv", "/proc/self/status"))
    with audited_pipeline(tmp_path, config) as pipeline:
        open(tmp_path / "a.csv").close()
        open(tmp_path / "b.txt").close()
        open("/proc/self/status").close()  # excluded by default, included explicitly
        open(os.__file__).close()  # stdlib: not included
        assert _uris(pipeline) == [f"file://{tmp_path}/a.csv", "file:///proc/self/status"]


def test_exclude_wins_over_include(tmp_path):
    (tmp_path / "a.csv").write_text("a")
    config = AuditConfig(include_paths=(f"{tmp_path}/*",), exclude_paths=(f"{tmp_path}/a.*",))
    with audited_pipeline(tmp_path, config) as pipeline:
        open(tmp_path / "a.csv").close()
        assert _uris(pipeline) == []


def test_model_extensions_setting(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    (tmp_path / "w.pt").write_bytes(b"x")
    with audited_pipeline(tmp_path, AuditConfig(model_extensions=(".bin",))) as pipeline:
        open(tmp_path / "w.bin", "rb").close()
        open(tmp_path / "w.pt", "rb").close()
        types = [r["attributes"][schema.AUDIT_RESOURCE_TYPE] for r in pipeline.all_records()]
        assert types == ["model", "data"]


def test_weights_beside_a_config_json_are_models_and_model_paths_make_any_resource_a_model(tmp_path, monkeypatch):
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    for name in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"):
        (hf / name).write_bytes(b"w")
    (tmp_path / "lone.bin").write_bytes(b"x")  # no config.json beside it: data
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "raw.dat").write_bytes(b"w")
    monkeypatch.chdir(tmp_path)
    config = AuditConfig.from_env({"OTEL_PYTHON_AUDIT_MODEL_PATHS": "weights/*,s3://ml-prod/weights/*"}, strict=True)
    assert config.model_paths == (f"{tmp_path}/weights/*", "s3://ml-prod/weights/*")  # relative: at the cwd
    with audited_pipeline(tmp_path, config) as pipeline:
        for name in ("hf-model/pytorch_model.bin", "hf-model/tf_model.h5", "hf-model/flax_model.msgpack",
                     "lone.bin", "weights/raw.dat", "hf-model/config.json"):
            open(tmp_path / name, "rb").close()
        types = [r["attributes"][schema.AUDIT_RESOURCE_TYPE] for r in pipeline.all_records()]
        assert types == ["model", "model", "model", "data", "model", "data"]
    from otel_audit.resources import ResourcePolicy

    policy = ResourcePolicy(config)
    assert policy.describe("s3://ml-prod/weights/x.dat")[schema.AUDIT_RESOURCE_TYPE] == "model"
    assert policy.describe("s3://ml-prod/data/x.dat")[schema.AUDIT_RESOURCE_TYPE] == "data"


@pytest.mark.parametrize("name", ["OTEL_PYTHON_AUDIT_FILE", "OTEL_PYTHON_AUDIT_SPOOL_DIR",
                                  "OTEL_PYTHON_AUDIT_INCLUDE_PATHS", "OTEL_PYTHON_AUDIT_HOOKS"])
def test_a_huge_value_is_echoed_shortened(name, capsys):
    from otel_audit import diagnostics

    diagnostics._forget()
    config = AuditConfig.from_env({name: "x" * 100_000})
    assert config == AuditConfig()
    err = capsys.readouterr().err
    assert err.startswith(f"otel-audit: {name}='xxxx") and err.count("\n") == 1
    assert "(100000 characters)" in err and len(err) < 500


def test_an_unknown_setting_is_named_with_the_closest_known_one(capsys):
    from otel_audit import diagnostics

    diagnostics._forget()
    config = AuditConfig.from_env({"OTEL_PYTHON_AUDIT_ONFAILURE": "closed", "OTEL_PYTHON_AUDIT_ZZZ": "1"})
    assert config == AuditConfig()
    assert capsys.readouterr().err.splitlines() == [
        "otel-audit: OTEL_PYTHON_AUDIT_ONFAILURE is not an otel-audit setting and is ignored; did you mean "
        "OTEL_PYTHON_AUDIT_ON_FAILURE?",
        "otel-audit: OTEL_PYTHON_AUDIT_ZZZ is not an otel-audit setting and is ignored; the settings are "
        "listed in the README",
    ]


def test_redaction_patterns_split_on_unescaped_commas():
    config = AuditConfig.from_env({"OTEL_PYTHON_AUDIT_REDACT": r"patient_id=([^/]+), \d{3}-\d{2\,4} ,a\,b"})
    assert config.redact == ("patient_id=([^/]+)", r"\d{3}-\d{2,4}", "a,b")
