"""Audit of auditing: otel-audit's own lifecycle records (``audit.lifecycle``).

Started (written just before the process's first record: a program that touches nothing writes
nothing, and start-up pays nothing), a hook that could not patch its library, the policy changed or
failed, and uninstrument(): each a record with the same resource, identity and sequence as the
accesses, field by field.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import BIN, audited_pipeline, instrumented_env, records_from_jsonl, run_instrumented
from otel_audit import diagnostics, schema
from otel_audit.config import AuditConfig
from otel_audit.version import __version__

JOB = """\
import sys
open(sys.argv[1]).read()
"""


def _trail(path) -> list[dict]:
    return records_from_jsonl(path, lifecycle=True)


def test_a_run_starts_with_a_started_record_and_shares_one_sequence_with_its_accesses(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "policy.yaml").write_text("mode: dry-run\nrules: []\n")
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"),
                           OTEL_PYTHON_AUDIT_POLICY=str(tmp_path / "policy.yaml"))
    result = run_instrumented(tmp_path / "job.py", str(tmp_path / "data.csv"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    started, access, closing = _trail(tmp_path / "trail.jsonl")
    assert (started["event_name"], access["event_name"]) == ("audit.lifecycle", "audit.access")
    assert closing["event_name"] == "audit.checkpoint" and closing["attributes"][schema.AUDIT_CHECKPOINT_FINAL] is True
    assert closing["attributes"][schema.AUDIT_SEQ] == 3 and closing["resource"] == access["resource"]
    assert started["attributes"][schema.AUDIT_CHAIN_ALGORITHM] == "sha256"  # (no key configured)
    a = started["attributes"]
    assert a[schema.AUDIT_LIFECYCLE_EVENT] == "started" and a[schema.AUDIT_VERSION] == __version__
    assert a[schema.AUDIT_DELIVERY] == "durable"
    assert {"open", "os", "pandas", "torch", "boto3"} <= set(a[schema.AUDIT_HOOKS]) and "threads" not in a[schema.AUDIT_HOOKS]
    assert (a[schema.AUDIT_POLICY_PATH], a[schema.AUDIT_POLICY_MODE]) == (str(tmp_path / "policy.yaml"), "dry-run")
    assert len(a[schema.AUDIT_POLICY_SHA256]) == 64
    assert (started["severity_text"], started["resource"]) == ("INFO", access["resource"])
    identity = (schema.USER_NAME, schema.USER_ID, schema.PROCESS_PID)
    assert [a[k] for k in identity] == [access["attributes"][k] for k in identity]
    assert (a[schema.AUDIT_SEQ], access["attributes"][schema.AUDIT_SEQ]) == (1, 2)  # one sequence
    assert started["body"].startswith(f"otel-audit started ({__version__}): {len(a[schema.AUDIT_HOOKS])} hooks, "
                                      "durable delivery; policy ")
    assert started["time_unix_nano"] <= access["time_unix_nano"]
    # the trail's readers leave lifecycle records out of the accesses, without a word
    shown = subprocess.run([str(BIN / "otel-audit"), "show", str(tmp_path / "trail.jsonl")], capture_output=True,
                           text=True, timeout=60)
    assert (shown.returncode, shown.stderr, len(shown.stdout.splitlines())) == (0, "", 2)


def test_a_process_that_accesses_nothing_writes_nothing(tmp_path):
    (tmp_path / "idle.py").write_text("import json\n")
    spool = tmp_path / "spool"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"),
                           OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool))
    result = run_instrumented(tmp_path / "idle.py", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert not (tmp_path / "trail.jsonl").exists() and not spool.exists()


def test_each_forked_worker_starts_its_own_sequence_with_started(tmp_path):
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "fork.py").write_text(
        "import os, sys\n"
        "open(sys.argv[1]).read()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    open(sys.argv[1]).read()\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n")
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"))
    result = run_instrumented(tmp_path / "fork.py", str(tmp_path / "data.csv"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    by_pid: dict = {}
    seen: dict = {}
    for record in _trail(tmp_path / "trail.jsonl"):
        a = record["attributes"]
        if a[schema.AUDIT_RECORD_ID] in seen:  # at least once: the child's shipper may have sent a record the
            assert seen[a[schema.AUDIT_RECORD_ID]] == record  # parent then delivers again from its segment
            continue
        seen[a[schema.AUDIT_RECORD_ID]] = record
        by_pid.setdefault(a[schema.PROCESS_PID], []).append(
            (a[schema.AUDIT_SEQ], a.get(schema.AUDIT_LIFECYCLE_EVENT, a.get(schema.AUDIT_API))))
    # the child leaves through os._exit, as a killed process would: its stream has no closing checkpoint
    assert sorted(sorted(v, key=str) for v in by_pid.values()) == [
        [(1, "started"), (2, "builtins.open")], [(1, "started"), (2, "builtins.open"), (3, None)]]


def test_a_hook_that_cannot_patch_its_library_is_a_warning_record(tmp_path, monkeypatch):
    from otel_audit.hooks import joblib_hook

    def broken(point, module):
        raise RuntimeError("simulated incompatible joblib")

    monkeypatch.setitem(joblib_hook.ACCESS_POINT._patchers, "joblib", broken)
    diagnostics._forget()
    import joblib  # noqa: F401  (imported already: patched, and failing, at install)

    with audited_pipeline(tmp_path, AuditConfig(hooks=("joblib", "open"))) as pipeline:
        open(tmp_path / "x", "w").close()
        lifecycle = pipeline.lifecycle()
    assert [r["attributes"][schema.AUDIT_LIFECYCLE_EVENT] for r in lifecycle] == ["started", "hook_failed"]
    failed = lifecycle[1]
    assert (failed["severity_text"], failed["attributes"][schema.AUDIT_HOOK],
            failed["attributes"][schema.AUDIT_LIFECYCLE_DETAIL]) == (
        "WARN", "joblib (joblib)", "RuntimeError: simulated incompatible joblib")
    assert "joblib (joblib) NOT audited; RuntimeError: simulated incompatible joblib" in failed["body"]
    assert lifecycle[0]["attributes"][schema.AUDIT_HOOKS] == ["joblib", "open"]


def test_policy_changes_and_failures_and_uninstrument_are_records(tmp_path):
    (tmp_path / "policy.yaml").write_text("rules: []\n")
    with audited_pipeline(tmp_path, AuditConfig(policy=str(tmp_path / "policy.yaml"))) as pipeline:
        open(tmp_path / "x", "w").close()
        (tmp_path / "policy.yaml").write_text("default: deny\nrules: [{id: a, effect: allow}]\n")
        deadline = time.monotonic() + 10
        while len(pipeline.lifecycle()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        (tmp_path / "policy.yaml").write_text("default: nope\n")
        while len(pipeline.lifecycle()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    events = [(r["attributes"][schema.AUDIT_LIFECYCLE_EVENT], r["severity_text"]) for r in pipeline.lifecycle()]
    assert events == [("started", "INFO"), ("policy_loaded", "INFO"), ("policy_failed", "WARN"), ("stopped", "INFO")]
    started, loaded, failed, stopped = (r["attributes"] for r in pipeline.lifecycle())
    assert started[schema.AUDIT_POLICY_SHA256] != loaded[schema.AUDIT_POLICY_SHA256]
    assert loaded[schema.AUDIT_POLICY_MODE] == "enforce"
    assert failed[schema.AUDIT_LIFECYCLE_DETAIL] == (f"policy '{tmp_path}/policy.yaml': default 'nope' is not "
                                                    "accepted; accepted: allow, deny")
    assert schema.AUDIT_POLICY_SHA256 not in failed and failed[schema.AUDIT_POLICY_PATH] == str(tmp_path / "policy.yaml")
    seqs = [r["attributes"][schema.AUDIT_SEQ] for r in pipeline.everything()]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("table", ["lifecycle-table"])
def test_the_lifecycle_table_is_generated_from_the_schema_module(table):
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    between = readme.split(f"<!-- {table}:start -->\n")[1].split(f"<!-- {table}:end -->")[0].strip()
    assert between == schema.schema_table_markdown(schema.LIFECYCLE_ATTRIBUTES)
    assert sys.modules["otel_audit.schema"].LIFECYCLE_EVENT_NAME in readme


def test_a_policy_that_cannot_load_at_start_is_recorded_before_the_first_access(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [{id: x, effect: maybe}]\n")
    diagnostics._forget()
    with audited_pipeline(tmp_path, AuditConfig(policy=str(policy))) as pipeline:
        open(tmp_path / "x", "w").close()
    everything = pipeline.everything()
    assert [(r["event_name"], r["attributes"].get(schema.AUDIT_LIFECYCLE_EVENT), r["severity_text"])
            for r in everything] == [("audit.lifecycle", "started", "INFO"), ("audit.lifecycle", "policy_failed", "WARN"),
                                     ("audit.access", None, "INFO"), ("audit.lifecycle", "stopped", "INFO"),
                                     ("audit.checkpoint", None, "INFO")]  # (the chain's closing checkpoint)
    started, failed, access, _, _ = (r["attributes"] for r in everything)
    assert started[schema.AUDIT_POLICY_PATH] == failed[schema.AUDIT_POLICY_PATH] == str(policy)
    assert schema.AUDIT_POLICY_SHA256 not in started and schema.AUDIT_POLICY_SHA256 not in failed
    assert failed[schema.AUDIT_LIFECYCLE_DETAIL] == (f"policy '{policy}': rule 0 (id 'x'): effect 'maybe' is not "
                                                    "accepted; accepted: allow, deny")
    assert access[schema.AUDIT_POLICY_DECISION] == schema.DECISION_NOT_ENFORCED
    assert [r["attributes"][schema.AUDIT_SEQ] for r in everything] == [1, 2, 3, 4, 5]
    assert everything[0]["body"] == f"otel-audit started ({__version__}): {len(AuditConfig().hooks)} hooks, memory " \
                                    f"delivery; policy {policy} NOT in force"
