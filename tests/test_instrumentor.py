"""The instrumentor: entry point, lazy patching, exact restore, never raising."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from importlib.metadata import entry_points

import pytest

from otel_audit import AuditInstrumentor, diagnostics
from otel_audit.config import AuditConfig
from otlp_receiver import records_from_jsonl


def _python(code: str, *args: str, **env) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=environ, timeout=300)


def test_entry_points_are_registered():
    (instrumentor,) = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "otel_audit"]
    assert instrumentor.load() is AuditInstrumentor
    (exporter,) = [ep for ep in entry_points(group="opentelemetry_logs_exporter") if ep.name == "audit_file"]
    assert exporter.load().__name__ == "AuditFileLogExporter"


def test_instrument_imports_no_instrumented_library_and_patches_on_import(tmp_path):
    # Start-up does only what it must: no instrumented library, no hook module but those of what is
    # imported already (open, os, threads), no delivery machinery before the first record.
    result = _python("""
        import sys
        from otel_audit import AuditInstrumentor
        AuditInstrumentor().instrument(config=__import__("otel_audit").AuditConfig(spool_dir=sys.argv[1] + "/spool"))
        ours = lambda prefix: sorted(m[len(prefix):] for m in sys.modules if m.startswith(prefix))
        heavy = [m for m in ("pandas", "numpy", "torch", "safetensors", "joblib", "boto3", "botocore", "s3transfer") if m in sys.modules]
        print("imported:", heavy)
        print("hook modules:", ours("otel_audit.hooks."))
        print("delivery:", ours("otel_audit.delivery."))
        import joblib
        print("joblib patched:", type(joblib.load).__name__)
        print("hook modules:", ours("otel_audit.hooks."))
        open(sys.argv[1] + "/data.csv", "w").close()
        # (not "sink" and its "otlp_json", the audit_file exporter the shipper thread may be loading meanwhile)
        print("delivery:", [m for m in ours("otel_audit.delivery.") if m not in ("sink", "otlp_json")])
        AuditInstrumentor().uninstrument()
        print("joblib restored:", type(joblib.load).__name__)
    """, str(tmp_path), OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "imported: []",
        "hook modules: ['_base', 'open_hook', 'os_hook', 'threads_hook']",
        "delivery: []",
        "joblib patched: AuditedFunction",
        "hook modules: ['_base', 'joblib_hook', 'numpy_hook', 'open_hook', 'os_hook', 'threads_hook']",  # joblib imports numpy
        "delivery: ['mapped', 'otlp', 'ownfiles', 'shipper', 'spool', 'transport']",
        "joblib restored: function",
    ]
    assert result.stderr == ""
    assert [r["attributes"]["file.path"] for r in records_from_jsonl(tmp_path / "trail.jsonl")] == [
        str(tmp_path / "data.csv")]


def test_each_hook_is_loaded_by_the_modules_it_patches():
    # hooks.MODULES decides when a hook's module is loaded: it must name every module the hook patches
    # (one missing could leave that library unaudited, or a re-export of it unpatched) and nothing else
    from otel_audit.config import HOOK_NAMES
    from otel_audit.hooks import MODULES, load_access_point

    assert sorted(MODULES) == sorted((*HOOK_NAMES, "threads"))
    for name, modules in MODULES.items():
        assert sorted(modules) == sorted(load_access_point(name)._patchers), name


def test_a_library_imported_while_uninstrumented_is_patched_when_instrumented_again():
    result = _python("""
        from otel_audit import AuditConfig, AuditInstrumentor
        AuditInstrumentor().instrument(config=AuditConfig(delivery="memory"))
        AuditInstrumentor().uninstrument()
        import joblib
        print(type(joblib.load).__name__)
        AuditInstrumentor().instrument(config=AuditConfig(delivery="memory"))
        print(type(joblib.load).__name__)
        AuditInstrumentor().uninstrument()
        print(type(joblib.load).__name__)
        AuditInstrumentor().instrument(config=AuditConfig(delivery="memory"))
        print(type(joblib.load).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["function", "AuditedFunction", "function", "AuditedFunction"]
    assert result.stderr == ""


def test_a_hook_module_that_cannot_load_is_reported_when_its_library_is_imported():
    result = _python("""
        import sys
        sys.modules["otel_audit.hooks.joblib_hook"] = None  # as if our module were broken on this machine
        from otel_audit import AuditConfig, AuditInstrumentor
        AuditInstrumentor().instrument(config=AuditConfig(delivery="memory"))
        print("started", flush=True)
        import joblib
        import joblib
        print(type(joblib.load).__name__, type(open).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", "function", "AuditedFunction"]
    assert result.stderr == ("otel-audit: hook 'joblib' not installed: ModuleNotFoundError: import of "
                             "otel_audit.hooks.joblib_hook halted; None in sys.modules; its accesses are NOT audited\n")


def test_safe_when_no_library_is_installed():
    # Make every instrumented library unimportable, as on a machine without them.
    result = _python("""
        import sys
        for name in ("pandas", "numpy", "torch", "safetensors", "joblib", "boto3", "botocore", "s3transfer"):
            sys.modules[name] = None
        from otel_audit import AuditInstrumentor
        AuditInstrumentor().instrument()
        open(__import__("os").devnull).close()
        try:
            import pandas
        except ImportError:
            print("pandas unavailable, as before")
        AuditInstrumentor().uninstrument()
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pandas unavailable, as before"
    assert result.stderr == ""


def _patched_objects():
    import builtins
    import io
    import posix

    import boto3.s3.inject
    import botocore.client
    import joblib
    import joblib.numpy_pickle
    import numpy
    import pandas
    import safetensors
    import safetensors.numpy
    import safetensors.torch
    import torch
    import torch.serialization

    return {
        "builtins.open": builtins.open, "io.open": io.open,
        "pandas.read_csv": pandas.read_csv, "pandas.read_parquet": pandas.read_parquet,
        "torch.load": torch.load, "torch.serialization.load": torch.serialization.load, "torch.save": torch.save,
        "numpy.load": numpy.load, "numpy.save": numpy.save, "numpy.fromfile": numpy.fromfile,
        "safetensors.safe_open": safetensors.safe_open, "safetensors.torch.load_file": safetensors.torch.load_file,
        "safetensors.torch.save_model": safetensors.torch.save_model,
        "safetensors.numpy.save_file": safetensors.numpy.save_file,
        "joblib.load": joblib.load, "joblib.numpy_pickle.load": joblib.numpy_pickle.load, "joblib.dump": joblib.dump,
        "BaseClient._make_api_call": vars(botocore.client.BaseClient)["_make_api_call"],
        "inject.download_file": boto3.s3.inject.download_file,
        "inject.download_fileobj": boto3.s3.inject.download_fileobj,
        "posix.listdir": posix.listdir,
        **_from_tables(),
    }


def _constructor(patched):
    """What is patched for a Python class: its __init__ (or __new__), not the class; else the object itself."""
    if isinstance(patched, type):
        for method in ("__init__", "__new__"):
            defined = vars(patched).get(method)
            if isinstance(getattr(defined, "__func__", defined), types.FunctionType) or type(defined).__name__ == "AuditedFunction":
                return defined
    return patched


def _from_tables():
    """Every name the table-driven hooks patch (os, pyarrow, the pandas writers), where it is defined."""
    import importlib
    import pathlib

    import pandas

    from otel_audit.hooks import h5py_hook, os_hook, pandas_hook, pillow_hook, polars_hook, pyarrow_hook

    found = {}
    for table in (os_hook.FUNCTIONS, pyarrow_hook.MODULES, polars_hook.MODULES, h5py_hook.MODULES, pillow_hook.MODULES):
        for key, names in table.items():
            module_name, _, class_name = key.partition(":")
            owner = importlib.import_module(module_name)
            owner = vars(getattr(owner, class_name)) if class_name else vars(owner)
            found.update({f"{key}.{name}": _constructor(owner[name]) for name in names if name in owner})
    found.update({f"Path.{name}": vars(pathlib.Path)[name] for name in os_hook.PATH_METHODS})
    for method in pandas_hook.WRITERS:
        for frame_type in (pandas.DataFrame, pandas.Series):
            owner = next((cls for cls in frame_type.__mro__ if method in vars(cls)), None)
            if owner is not None:  # Series has no to_parquet
                found[f"{owner.__name__}.{method}"] = vars(owner)[method]
    import sqlite3

    import fsspec.spec
    found["sqlite3.connect"] = sqlite3.connect
    found["fsspec _Cached.__call__"] = vars(fsspec.spec._Cached)["__call__"]
    import polars
    found.update({f"polars.{name}": getattr(polars, name) for name in (*polars_hook.SCANS, "collect_all")
                  if hasattr(polars, name)})
    found.update({f"LazyFrame.{name}": vars(polars.LazyFrame)[name] for name in (*polars_hook.COLLECTS, *polars_hook.SINKS)
                  if name in vars(polars.LazyFrame)})
    import concurrent.futures.thread
    found["ThreadPoolExecutor.submit"] = vars(concurrent.futures.thread.ThreadPoolExecutor)["submit"]
    found["pandas.read_sql"] = pandas.read_sql
    import numpy
    import pyarrow.dataset
    import pyarrow.fs
    # methods of immutable C types (set on them with the immutable flag lifted): restored exactly too
    found["ndarray.tofile"] = vars(numpy.ndarray)["tofile"]
    import io
    found["FileIO.__init__"] = vars(io.FileIO)["__init__"]  # a C slot wrapper, restored with the C slot behind it
    for key, names in pyarrow_hook.DATASET_MAKERS.items():
        module_name, _, class_name = key.partition(":")
        owner = importlib.import_module(module_name)
        owner = vars(getattr(owner, class_name)) if class_name else vars(owner)
        found.update({f"{key}.{name}": owner[name] for name in names})
    for type_name, methods in pyarrow_hook.SCAN_METHODS.items():
        owner = vars(getattr(pyarrow.dataset, type_name))
        found.update({f"{type_name}.{name}": owner[name] for name in methods if name in owner})
    for type_name, name, _ in pyarrow_hook.SAME_SOURCE:
        found[f"{type_name}.{name}"] = vars(getattr(pyarrow.dataset, type_name) if type_name else pyarrow.dataset)[name]
    found.update({f"FileSystem.{name}": vars(pyarrow.fs.FileSystem)[name]
                  for name in (*pyarrow_hook.FILESYSTEM_METHODS, "get_file_info")})
    assert len(found) >= 160, len(found)  # a table that lost its entries would pass unseen
    return found


def test_uninstrument_restores_every_original_object():
    before = _patched_objects()
    AuditInstrumentor().instrument(config=AuditConfig())
    try:
        during = _patched_objects()
        assert all(during[name] is not before[name] for name in before), [n for n in before if during[n] is before[n]]
        # where __module__ says a function lives, the very same wrapper (so it pickles by reference);
        # pandas declares its readers' __module__ as "pandas" itself
        assert during["torch.load"] is during["torch.serialization.load"]
        assert during["joblib.load"] is during["joblib.numpy_pickle.load"]
    finally:
        AuditInstrumentor().uninstrument()
    after = _patched_objects()
    assert all(after[name] is before[name] for name in before), [n for n in before if after[n] is not before[n]]
    import numpy
    import pyarrow.dataset
    import io
    for cls in (numpy.ndarray, pyarrow.dataset.Dataset, pyarrow.dataset.Scanner, io.FileIO):  # immutable again
        with pytest.raises(TypeError, match="immutable"):
            cls.anything = 1
    assert type(io.FileIO.__init__).__name__ == "wrapper_descriptor"
    # and again: instrument/uninstrument cycles are repeatable
    AuditInstrumentor().instrument(config=AuditConfig())
    AuditInstrumentor().uninstrument()
    assert all(_patched_objects()[name] is before[name] for name in before)


def test_hooks_setting_chooses_access_points(tmp_path):
    import joblib

    from conftest import audited_pipeline

    with audited_pipeline(tmp_path, AuditConfig(hooks=("open",))) as pipeline:
        assert type(joblib.load).__name__ == "function"
        joblib.dump([1], tmp_path / "m.joblib")  # recorded by open only, as a write of data/model by extension
        open(tmp_path / "x", "w").close()
        assert [r["attributes"]["audit.api"] for r in pipeline.records()] == ["builtins.open"] * 2


def test_a_failing_patch_is_reported_and_never_raises(capsys, monkeypatch):
    from otel_audit.hooks import joblib_hook

    def broken(point, module):
        raise RuntimeError("simulated incompatible joblib")

    import joblib  # noqa: F401  (imported already: patched, and failing, at install)

    monkeypatch.setitem(joblib_hook.ACCESS_POINT._patchers, "joblib", broken)
    diagnostics._forget()
    AuditInstrumentor().instrument(config=AuditConfig(hooks=("joblib", "open"), delivery="memory"))
    try:
        import builtins

        assert type(builtins.open).__name__ == "AuditedFunction"  # the other hooks still installed
    finally:
        AuditInstrumentor().uninstrument()
    err = capsys.readouterr().err
    assert err == ("otel-audit: could not patch joblib (RuntimeError: simulated incompatible joblib); "
                   "its accesses are NOT audited\n")


def test_internal_error_in_a_hook_is_reported_once_and_the_call_proceeds(audited, tmp_path, capsys, monkeypatch):
    from otel_audit import recorder as recorder_module

    def broken_user():
        raise RuntimeError("identity lookup exploded")

    path = tmp_path / "data.txt"
    path.write_text("payload")
    # break the recorder's enduser lookup: emitting fails, the user's call must not
    monkeypatch.setattr(recorder_module, "current_enduser", broken_user)
    for _ in range(3):
        with open(path) as handle:
            assert handle.read() == "payload"
    err = capsys.readouterr().err
    assert err.count("otel-audit: internal error in the recorder: RuntimeError: identity lookup exploded") == 1


def test_resource_without_instance_id_is_reported(capsys):
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource

    diagnostics._forget()
    provider = LoggerProvider(resource=Resource({"service.name": "hand-built"}))
    AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(hooks=("open",)))
    AuditInstrumentor().uninstrument()
    assert "resource has no service.instance.id" in capsys.readouterr().err
    provider = LoggerProvider(resource=Resource.create({"service.name": "created"}))
    AuditInstrumentor().instrument(logger_provider=provider, config=AuditConfig(hooks=("open",)))
    AuditInstrumentor().uninstrument()
    assert capsys.readouterr().err == ""


def test_the_public_names_the_readme_uses_are_importable_from_the_package():
    import otel_audit

    assert sorted(otel_audit.__all__) == ["AccessDenied", "AuditConfig", "AuditInstrumentor", "__version__", "audit_access",
                                          "enduser", "record_access"]
    for name in otel_audit.__all__:
        assert getattr(otel_audit, name) is not None
    assert otel_audit.AuditConfig is AuditConfig


def test_instrument_documents_its_own_arguments():
    import inspect

    signature = inspect.signature(AuditInstrumentor.instrument)
    assert [p for p in signature.parameters if p not in ("self", "kwargs")] == [
        "config", "logger_provider", "tracer_provider", "exporters"]
    doc = inspect.getdoc(AuditInstrumentor.instrument)
    for documented in ("``config``", "``logger_provider``", "``tracer_provider``", "``exporters``", "Never raises",
                       "uninstrument"):
        assert documented in doc


@pytest.mark.parametrize("environment", [{}, {"LOGNAME": "from-logname", "USER": "from-user"}, {"USER": "from-user"},
                                         {"LNAME": "from-lname"}, {"USERNAME": "from-username"}, {"LOGNAME": ""}])
def test_the_user_name_is_the_one_getpass_gives(monkeypatch, environment):
    # the recorder has its own copy of getpass.getuser() (getpass would load termios at every start)
    import getpass

    from otel_audit.recorder import login_name

    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert login_name() == getpass.getuser()
