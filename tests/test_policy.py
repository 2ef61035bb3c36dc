"""The access policy (``OTEL_PYTHON_AUDIT_POLICY``): grant or deny at the point of access.

Validation names the file, the rule, the field, the bad value and what is accepted; the first matching
rule decides, on every match field; a denial raises ``otel_audit.AccessDenied`` before the access and
is a ``denied`` record; a dry run refuses nothing and says ``would_deny``; an unloadable policy is
fail-closed or said not enforced; a changed file is picked up; every access point of every job is
refused under a deny-all policy, as are threads, forked and spawned workers and the manual API; and
``otel-audit policy check/explain`` say what they do with documented exit statuses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import BIN, REPO, audited_pipeline, instrumented_env, records_from_jsonl, run_instrumented
from jobs import check_denied
from otel_audit import schema
from otel_audit.config import AuditConfig
from otel_audit.policy import DEFAULT_RULE, UNLOADABLE_RULE, PolicyError, load, parse

SCRIPTS = REPO / "tests" / "scripts"

def _readme_policy_section() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("## Access policy"):text.index("## Delivery guarantees")]


EXAMPLE = _readme_policy_section().split("```yaml\n")[1].split("```")[0]  # the README's own example


def facts(resource=("file:///data/a.csv", "/data/a.csv"), user=("alice", "1000"), action="read", type="data",
          api="pandas.read_csv", enduser=None, service="trainer") -> dict:
    return {"resource": resource, "user": user, "action": (action,), "type": (type,), "api": (api,),
            "enduser": (enduser,), "service": (service,)}


# -- the file ---------------------------------------------------------------------------------------

def test_the_readme_example_policy_loads_and_its_rules_decide_in_order(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE)
    policy = load(str(path))
    assert (policy.default, policy.mode, [r.id for r in policy.rules]) == (
        "allow", "enforce", ["no-pii-for-interns", "the-trainer-writes-weights", "no-one-else-writes-weights"])
    pii = ("s3://ml-prod/pii/2024/x.parquet",)
    assert policy.decide(facts(resource=pii, user=("intern-bob", "1001"))).rule == "no-pii-for-interns"
    assert policy.decide(facts(resource=pii, user=("intern-bob", "1001"))).effect == "deny"
    assert policy.decide(facts(resource=pii, user=("alice", "1000"))).rule == DEFAULT_RULE  # user does not match
    assert policy.decide(facts(resource=pii, user=("intern-bob", "1001"), action="write")).effect == "allow"
    # resource globs match the URI or the plain local path; * matches / too
    assert policy.decide(facts(resource=("file:///data/pii/a/b.csv", "/data/pii/a/b.csv"),
                               user=("intern-x", "7"))).rule == "no-pii-for-interns"
    # the first match wins: the trainer's allow comes before everyone else's deny
    assert policy.decide(facts(type="model", action="write", service="trainer")).rule == "the-trainer-writes-weights"
    assert policy.decide(facts(type="model", action="write", service="notebook")).effect == "deny"
    assert policy.decide(facts(type="model", action="read", service="notebook")).rule == DEFAULT_RULE


def test_each_match_field_and_first_match_wins_and_default_deny_is_an_allow_list():
    def decided(rules, default="deny", **given):
        document = {"default": default, "rules": rules}
        return parse(json.dumps(document).encode(), "p.json").decide(facts(**given))

    cases = [  # (match, facts that match, facts that do not)
        ({"resource": "s3://b/raw/*"}, {"resource": ("s3://b/raw/x",)}, {"resource": ("s3://b/clean/x",)}),
        ({"resource": "/data/*"}, {"resource": ("file:///data/a", "/data/a")}, {"resource": ("file:///srv/a", "/srv/a")}),
        ({"user": "svc-*"}, {"user": ("svc-train", "1000")}, {"user": ("alice", "1000")}),
        ({"user": "1000"}, {"user": ("alice", "1000")}, {"user": ("alice", "1001")}),  # the numeric id too
        ({"action": ["write", "delete"]}, {"action": "delete"}, {"action": "read"}),
        ({"type": "model"}, {"type": "model"}, {"type": "data"}),
        ({"api": "torch.*"}, {"api": "torch.load"}, {"api": "pandas.read_csv"}),
        ({"enduser": "patient-*"}, {"enduser": "patient-7"}, {"enduser": None}),  # no end user: no match
        ({"service": "etl"}, {"service": "etl"}, {"service": "etl-2"}),  # the whole value, not a prefix
        ({"api": "Pandas.*"}, {"api": "Pandas.read_csv"}, {"api": "pandas.read_csv"}),  # case-sensitive
    ]
    for match, hit, miss in cases:
        rules = [{"id": "r", "effect": "allow", "match": match}]
        assert (decided(rules, **hit).effect, decided(rules, **hit).rule) == ("allow", "r"), match
        assert (decided(rules, **miss).effect, decided(rules, **miss).rule) == ("deny", DEFAULT_RULE), match
    # all given keys must match
    both = [{"id": "r", "effect": "allow", "match": {"user": "svc-*", "action": "read"}}]
    assert decided(both, user=("svc-a", "1"), action="read").effect == "allow"
    assert decided(both, user=("svc-a", "1"), action="write").effect == "deny"
    # first match wins, whatever comes after; a rule without match matches everything
    ordered = [{"id": "first", "effect": "deny", "match": {"action": "read"}}, {"id": "second", "effect": "allow"}]
    assert decided(ordered).rule == "first" and decided(ordered, action="write").rule == "second"


@pytest.mark.parametrize("document, expected", [
    ("default: maybe\n", "policy 'P': default 'maybe' is not accepted; accepted: allow, deny"),
    ("mode: audit\n", "policy 'P': mode 'audit' is not accepted; accepted: enforce, dry-run"),
    ("rules: {}\n", "policy 'P': rules {} is not accepted; accepted: a list of rules"),
    ("colour: red\n", "policy 'P': field 'colour' is not accepted; accepted: default, mode, rules"),
    ("- 1\n", "policy 'P': the document is [1]; accepted: a mapping with default, mode, rules"),
    ("rules: [7]\n", "policy 'P': rule 0: the rule is 7; accepted: a mapping with id, effect, match, description"),
    ("rules:\n  - effect: deny\n", "policy 'P': rule 0: id null is not accepted; accepted: a non-empty string naming the rule"),
    ("rules:\n  - {id: a, effect: deny}\n  - {id: a, effect: allow}\n",
     "policy 'P': rule 1 (id 'a'): id 'a' is not accepted: another rule has it; accepted: a unique id"),
    ("rules:\n  - {id: a, effect: permit}\n", "policy 'P': rule 0 (id 'a'): effect 'permit' is not accepted; "
                                               "accepted: allow, deny"),
    ("rules:\n  - {id: a, effect: deny, match: {colour: red}}\n",
     "policy 'P': rule 0 (id 'a'): match field 'colour' is not accepted; accepted: resource, user, action, type, "
     "api, enduser, service"),
    ("rules:\n  - {id: a, effect: deny, match: {action: [reed]}}\n",
     "policy 'P': rule 0 (id 'a'): match.action 'reed' matches no action; accepted: read, write, delete, list"),
    ("rules:\n  - {id: a, effect: deny, match: {type: weights}}\n",
     "policy 'P': rule 0 (id 'a'): match.type 'weights' matches no type; accepted: data, model"),
    ("rules:\n  - {id: a, effect: deny, match: {user: []}}\n",
     "policy 'P': rule 0 (id 'a'): match.user [] is not accepted; accepted: a non-empty glob"),
    ("rules:\n  - {id: a, effect: deny, match: {user: 7}}\n",
     "policy 'P': rule 0 (id 'a'): match.user 7 is not accepted; accepted: a non-empty glob"),
    ("rules:\n  - {id: a, effect: deny, when: now}\n",
     "policy 'P': rule 0 (id 'a'): field 'when' is not accepted; accepted: id, effect, match, description"),
    ("rules: [1, 2\n", "policy 'P' is not valid YAML: line 2, column 1: expected ',' or ']'"),
    ("rules:\n  - id: " + "x" * 5000 + "\n    effect: nope\n", "xxx' (5000 characters)): effect 'nope' is not accepted; accepted: allow, deny"),
])
def test_a_bad_policy_names_the_rule_the_field_the_value_and_what_is_accepted(document, expected):
    with pytest.raises(PolicyError) as raised:
        parse(document.encode(), "P")
    assert expected in str(raised.value), str(raised.value)
    assert len(str(raised.value)) < 600  # a huge value is shortened


def test_json_policies_and_unreadable_files(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"default": "deny", "rules": [{"id": "x", "effect": "allow"}]}))
    assert load(str(tmp_path / "p.json")).default == "deny"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PolicyError, match=r"policy '.*bad.json' is not valid JSON: Expecting property name"):
        load(str(tmp_path / "bad.json"))
    with pytest.raises(PolicyError, match=r"policy '.*missing.yaml' cannot be read: No such file or directory"):
        load(str(tmp_path / "missing.yaml"))
    (tmp_path / "latin.yaml").write_bytes(b"default: \xe9\n")
    with pytest.raises(PolicyError, match="is not UTF-8 text"):
        load(str(tmp_path / "latin.yaml"))


# -- in a process ---------------------------------------------------------------------------------------

def _policy_config(tmp_path, text: str, name: str = "policy.yaml", **config) -> AuditConfig:
    path = tmp_path / name
    path.write_text(text)
    return AuditConfig(policy=str(path), **config)


def test_a_denied_access_raises_before_it_happens_and_is_a_denied_record(tmp_path, capsys):
    import otel_audit

    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.csv").write_text("x\n1\n")
    (tmp_path / "open.csv").write_text("x\n2\n")
    config = _policy_config(tmp_path, f"rules:\n  - id: no-secrets\n    effect: deny\n    match:\n"
                                      f"      resource: '{tmp_path}/secret/*'\n")
    with audited_pipeline(tmp_path, config) as pipeline:
        assert open(tmp_path / "open.csv").read() == "x\n2\n"
        with pytest.raises(otel_audit.AccessDenied) as raised:
            open(tmp_path / "secret" / "new.csv", "w")
        line = sys._getframe().f_lineno - 1
        with pytest.raises(PermissionError):  # it is a PermissionError
            open(tmp_path / "secret" / "a.csv")
        records = [r["attributes"] for r in pipeline.records()]
    assert not (tmp_path / "secret" / "new.csv").exists()  # refused before the file was made
    assert raised.value.resources == [(tmp_path / "secret" / "new.csv").as_uri()] and raised.value.rules == ["no-secrets"]
    assert str(raised.value) == (f"otel-audit: the access policy {tmp_path}/policy.yaml denies write of "
                                 f"{(tmp_path / 'secret' / 'new.csv').as_uri()} by builtins.open (rule no-secrets)")
    assert [(a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME], a.get(schema.ERROR_TYPE), a[schema.AUDIT_POLICY_DECISION],
             a[schema.AUDIT_POLICY_RULE]) for a in records] == [
        ("read", "success", None, "allow", "default"),
        ("write", "denied", "AccessDenied", "deny", "no-secrets"),
        ("read", "denied", "AccessDenied", "deny", "no-secrets"),
    ]
    assert (records[1][schema.CODE_LINE_NUMBER], records[1][schema.AUDIT_API]) == (line, "builtins.open")
    assert f"access policy '{tmp_path}/policy.yaml' in force: 1 rule(s), default allow, mode enforce" in capsys.readouterr().err


def test_a_call_on_two_resources_is_refused_when_either_is_denied(tmp_path):
    import shutil

    import otel_audit

    (tmp_path / "src.txt").write_text("s")
    (tmp_path / "locked").mkdir()
    config = _policy_config(tmp_path, "rules:\n  - {id: ro, effect: deny, match: {resource: '*/locked/*', "
                                      "action: [write, delete]}}\n")
    with audited_pipeline(tmp_path, config) as pipeline:
        with pytest.raises(otel_audit.AccessDenied):
            shutil.copyfile(tmp_path / "src.txt", tmp_path / "locked" / "dst.txt")
        records = [r["attributes"] for r in pipeline.records()]
    assert not (tmp_path / "locked" / "dst.txt").exists()
    assert [(a[schema.AUDIT_API], a[schema.AUDIT_ACTION], a[schema.AUDIT_OUTCOME]) for a in records] == [
        ("shutil.copyfile", "write", "denied")]  # the source was not read: no record of a read


@pytest.mark.parametrize("where", ["file", "setting"])
def test_a_dry_run_refuses_nothing_and_says_would_deny(tmp_path, where):
    (tmp_path / "a.csv").write_text("a")
    text = "mode: dry-run\n" if where == "file" else "mode: enforce\n"
    config = _policy_config(tmp_path, text + "rules:\n  - {id: no-csv, effect: deny, match: {resource: '*.csv'}}\n",
                            policy_mode="dry-run" if where == "setting" else None)
    with audited_pipeline(tmp_path, config) as pipeline:
        assert open(tmp_path / "a.csv").read() == "a"
        open(tmp_path / "b.txt", "w").close()
        records = [r["attributes"] for r in pipeline.records()]
    assert [(a[schema.AUDIT_OUTCOME], a[schema.AUDIT_POLICY_DECISION], a[schema.AUDIT_POLICY_RULE]) for a in records] == [
        ("success", "would_deny", "no-csv"), ("success", "allow", "default")]


def test_the_manual_api_is_decided_too(tmp_path):
    import otel_audit

    config = _policy_config(tmp_path, "rules:\n  - {id: no-registry, effect: deny, match: {resource: 'mlflow://*'}}\n")
    ran = []
    with audited_pipeline(tmp_path, config) as pipeline:
        with pytest.raises(otel_audit.AccessDenied):
            otel_audit.record_access("mlflow://models/churn/3", "read")
        with pytest.raises(otel_audit.AccessDenied):
            with otel_audit.audit_access("mlflow://models/churn/3", "read", resource_type="model"):
                ran.append(True)
        otel_audit.record_access("postgres://db/t", "read")
        records = [r["attributes"] for r in pipeline.records()]
    assert ran == []  # refused before the block ran
    assert [(a[schema.AUDIT_RESOURCE_URI], a[schema.AUDIT_OUTCOME], a[schema.AUDIT_POLICY_RULE]) for a in records] == [
        ("mlflow://models/churn/3", "denied", "no-registry"), ("mlflow://models/churn/3", "denied", "no-registry"),
        ("postgres://db/t", "success", "default")]


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_an_unloadable_policy_denies_everything_fail_closed_and_is_said_not_enforced_fail_open(tmp_path, capsys, on_failure):
    import otel_audit

    (tmp_path / "a.csv").write_text("a")
    config = _policy_config(tmp_path, "rules:\n  - {id: x, effect: maybe}\n", on_failure=on_failure)
    with audited_pipeline(tmp_path, config) as pipeline:
        if on_failure == "closed":
            with pytest.raises(otel_audit.AccessDenied):
                open(tmp_path / "a.csv")
        else:
            assert open(tmp_path / "a.csv").read() == "a"
        records = [r["attributes"] for r in pipeline.records()]
    decision = "deny" if on_failure == "closed" else "not_enforced"
    outcome = "denied" if on_failure == "closed" else "success"
    assert [(a[schema.AUDIT_OUTCOME], a[schema.AUDIT_POLICY_DECISION], a[schema.AUDIT_POLICY_RULE]) for a in records] == [
        (outcome, decision, UNLOADABLE_RULE)]
    said = capsys.readouterr().err
    expected = "every audited access is DENIED" if on_failure == "closed" else "audited accesses go on unchecked"
    assert f"ACCESS POLICY NOT {'LOADED' if on_failure == 'closed' else 'ENFORCED'}: policy '{tmp_path}/policy.yaml': " \
           f"rule 0 (id 'x'): effect 'maybe' is not accepted; accepted: allow, deny; {expected}" in said, said


def test_a_changed_policy_file_is_picked_up_without_a_restart(tmp_path, capsys):
    import otel_audit

    (tmp_path / "a.csv").write_text("a")
    config = _policy_config(tmp_path, "rules: []\n")
    with audited_pipeline(tmp_path, config) as pipeline:
        assert open(tmp_path / "a.csv").read() == "a"
        (tmp_path / "policy.yaml").write_text("rules:\n  - {id: now-denied, effect: deny, match: {resource: '*.csv'}}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # looked at once a second
            try:
                open(tmp_path / "a.csv").close()
            except otel_audit.AccessDenied:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the changed policy was not picked up within 10 s")
        records = [r["attributes"] for r in pipeline.records()]
    assert records[0][schema.AUDIT_POLICY_RULE] == "default"
    assert (records[-1][schema.AUDIT_OUTCOME], records[-1][schema.AUDIT_POLICY_RULE]) == ("denied", "now-denied")
    said = capsys.readouterr().err
    assert said.count("in force: 0 rule(s)") == 1 and said.count("in force: 1 rule(s)") == 1, said


# -- every access point, workers, under the real opentelemetry-instrument --------------------------------

DENIED_JOBS = {
    "os_job.py": ["denied"] * 23 + ["PROCEEDED"],  # what tempfile does on its own is not the user's access
    # a get_file_info of a path (metadata, not recorded) and df.to_csv() with no path proceed
    "pyarrow_job.py": ["denied"] * 30 + ["PROCEEDED"] + ["denied"] * 13 + ["PROCEEDED", "denied"],
    "huggingface_job.py": ["denied"] * 12,
    "data_files_job.py": ["denied"] * 13 + ["PROCEEDED"] * 2 + ["denied"] * 6,
    "fsspec_job.py": ["denied"] * 14,
    "datasets_job.py": ["denied"] * 7,
    "model_files_job.py": ["denied"] * 7 + ["PROCEEDED"] + ["denied"] * 11,
}


@pytest.mark.parametrize("job", sorted(DENIED_JOBS))
def test_every_access_point_is_refused_by_a_deny_all_policy_before_it_touches_anything(tmp_path, job):
    check_denied(SCRIPTS / job, tmp_path, outcomes=DENIED_JOBS[job])


WORKERS = """\
import multiprocessing, sys, threading
import otel_audit

def attempt(path, queue):
    try:
        open(path).read()
        queue.put("read")
    except otel_audit.AccessDenied:
        queue.put("denied")

if __name__ == "__main__":
    path = sys.argv[1]
    results = []
    queue = multiprocessing.get_context("fork").Queue()
    thread = threading.Thread(target=attempt, args=(path, queue))
    thread.start(); thread.join(); results.append(("thread", queue.get()))
    for method in ("fork", "spawn"):
        context = multiprocessing.get_context(method)
        queue = context.Queue()
        process = context.Process(target=attempt, args=(path, queue))
        process.start(); results.append((method, queue.get())); process.join()
    print(results)
"""


def test_threads_and_forked_and_spawned_workers_are_refused(tmp_path):
    (tmp_path / "secret.csv").write_text("s")
    (tmp_path / "workers.py").write_text(WORKERS)
    (tmp_path / "policy.json").write_text(json.dumps(
        {"rules": [{"id": "no-secret", "effect": "deny", "match": {"resource": "*/secret.csv"}}]}))
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(tmp_path / "trail.jsonl"),
                           OTEL_PYTHON_AUDIT_POLICY=str(tmp_path / "policy.json"))
    result = run_instrumented(tmp_path / "workers.py", str(tmp_path / "secret.csv"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('thread', 'denied'), ('fork', 'denied'), ('spawn', 'denied')]"
    records = [r["attributes"] for r in records_from_jsonl(tmp_path / "trail.jsonl") if r["event_name"] == schema.EVENT_NAME]
    assert sorted((a[schema.AUDIT_OUTCOME], a[schema.AUDIT_POLICY_RULE]) for a in records) == [("denied", "no-secret")] * 3
    assert len({a[schema.PROCESS_PID] for a in records}) == 3  # the parent's thread, the forked and the spawned child


# -- the command line ---------------------------------------------------------------------------------

def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "otel-audit"), "policy", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_policy_check_validates_and_lists_the_rules(tmp_path):
    (tmp_path / "policy.yaml").write_text(EXAMPLE)
    result = _cli("check", "policy.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("policy.yaml: valid: 3 rule(s), default allow, mode enforce, sha256 ")
    assert lines[1:] == ["  0 no-pii-for-interns: deny resource s3://ml-prod/pii/*, /data/pii/*; user intern-*; action read",
                         "  1 the-trainer-writes-weights: allow type model; service trainer",
                         "  2 no-one-else-writes-weights: deny type model; action write, delete"]
    (tmp_path / "bad.yaml").write_text("rules:\n  - {id: a, effect: permit}\n")
    bad = _cli("check", "bad.yaml", cwd=tmp_path)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == ("otel-audit: policy 'bad.yaml': rule 0 (id 'a'): effect 'permit' is not accepted; "
                          "accepted: allow, deny\n")
    assert _cli("check", cwd=tmp_path).returncode == 2


def test_policy_explain_says_which_rule_decides_and_why_the_others_do_not(tmp_path):
    (tmp_path / "policy.yaml").write_text(EXAMPLE)
    denied = _cli("explain", "policy.yaml", "--user", "intern-bob", "--resource", "s3://ml-prod/pii/x.parquet",
                  "--action", "read", "--service", "trainer", cwd=tmp_path)
    assert denied.returncode == 1, denied.stderr
    assert denied.stdout.splitlines()[1:] == ["  rule 0 (no-pii-for-interns): matches -> deny",
                                              "decision: deny (rule no-pii-for-interns)"]
    # the README's example, line for line
    console = _readme_policy_section().split("```console\n")[1].split("```")[0].splitlines()
    assert console[0] == "$ otel-audit policy explain policy.yaml --user alice --resource /data/pii/a.csv --action read"
    allowed = _cli(*console[0].split()[3:], cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines() == console[1:]
    # a model file is typed by its name, as otel-audit types it; a dry run says would deny
    (tmp_path / "dry.yaml").write_text(EXAMPLE.replace("mode: enforce", "mode: dry-run"))
    model = _cli("explain", "dry.yaml", "--resource", "m.safetensors", "--action", "write", "--service", "nb",
                 cwd=tmp_path)
    assert model.returncode == 1 and model.stdout.splitlines()[-1] == (
        "decision: would deny (dry run) (rule no-one-else-writes-weights)"), model.stdout
    assert _cli("explain", "policy.yaml", "--resource", "x", "--action", "peek", cwd=tmp_path).returncode == 2
    (tmp_path / "bad.yaml").write_text("default: maybe\n")
    bad = _cli("explain", "bad.yaml", "--resource", "x", "--action", "read", cwd=tmp_path)
    assert bad.returncode == 2 and "default 'maybe' is not accepted" in bad.stderr


def test_the_policy_setting_is_checked_like_every_setting(tmp_path):
    config = AuditConfig.from_env({"OTEL_PYTHON_AUDIT_POLICY_MODE": "audit-only"})
    assert config.policy_mode is None
    assert config.errors == ("OTEL_PYTHON_AUDIT_POLICY_MODE='audit-only' is not accepted: not a known value; "
                             "accepted: enforce, dry-run. Using the default (unset).",)
    assert AuditConfig.from_env({"OTEL_PYTHON_AUDIT_POLICY": "p.yaml",
                                 "OTEL_PYTHON_AUDIT_POLICY_MODE": "Dry-Run"}).policy_mode == "dry-run"
