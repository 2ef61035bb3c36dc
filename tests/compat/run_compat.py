#!/usr/bin/env python
"""Behaviour-preservation ("compat") runs: the instrumented libraries' own test suites, with and without otel-audit.

For each suite the library's *shipped* tests run twice, in subprocesses, from a
scratch working directory:

* ``plain``: ``python -m pytest ...``
* ``audited``: ``opentelemetry-instrument python -m pytest ...`` (the real
  command, found next to ``sys.executable``) with otel-audit active and its
  records really exported to the embedded ``audit_file`` sink.  The audit file
  must be non-empty afterwards: that proves otel-audit was active.

Per-test outcomes come from a JUnit XML report per run.  The sets of failing
(failed or erroring) tests are compared; a test failing in only one run is
rerun once, alone with the others that differ, in both modes, before it is
declared a difference.  Exit status: 0 when no test fails only with otel-audit,
1 when one does, 2 when a run could not be evaluated (timeout, no report, empty
audit file).

Suites:

``joblib``
    ``python -m pytest --pyargs joblib``, all of it but one test that can hang
    forever (see ``SUITES``).  Its 5 async tests fail in both runs on a machine
    without pytest-asyncio.  ~2.5 min plain, ~3.5 min audited on 2 cores (every
    loky/multiprocessing worker starts the SDK too); nothing is left out for speed.
``pandas-parser``
    ``python -m pytest <pandas>/tests/io/parser --no-strict-data-files``.
    pandas wheels do not ship the test data files: pandas' own
    ``--no-strict-data-files`` turns the tests that need them into skips
    instead of errors (same set in both runs).  The ``httpserver`` fixture comes
    from pytest-localserver (without it those tests error, in both runs); the S3
    tests need s3fs (not installed: it pins an older botocore than boto3 needs)
    and the data files.  ~1 min per run.
``pyarrow-io``
    pyarrow's shipped tests of what the pyarrow hook patches: ``parquet/``, csv, json,
    feather, orc, ipc, dataset, fs and io (``pyarrow/tests/conftest.py`` needs
    hypothesis), but the seven ``test_fs.py`` tests that reach the real AWS S3 (see
    ``_NEEDS_AWS``).  The rest of pyarrow's tests (compute, types, arrays...) reach no
    patched function.  ~1 min per run.
``h5py``
    ``python -m pytest <h5py>/tests``, all of it; ~30 s per run.

Each run is killed after its suite's timeout (``--timeout`` overrides); a test
running longer than 3 minutes gets every thread's stack dumped into the log, and
one running longer than 5 minutes fails (pytest-timeout) while the run goes on,
so a test that hangs in one mode only is judged by the rerun like any failure.

Every run uses an empty ``pytest.ini`` in the scratch directory (``-c``) so
no project configuration (ours, or a parent directory's) leaks in, with
``--rootdir`` the site-packages directory holding the package, so test ids
read ``joblib/test/test_x.py::test_y`` in both runs.  Environment variables
steering OpenTelemetry (``OTEL_*``) or pytest (``PYTEST_ADDOPTS`` ...) are
not inherited.

Usage::

    python tests/compat/run_compat.py [--suite joblib|pandas-parser|pyarrow-io|h5py|all] [--keep] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
OPENTELEMETRY_INSTRUMENT = BIN / "opentelemetry-instrument"

FAILING = ("failed", "error")
OUTCOME_ORDER = ("passed", "skipped", "xfailed", "error", "failed")  # later wins for one id

MAX_LISTED = 30


# -- suites ----------------------------------------------------------------

@dataclass(frozen=True)
class Suite:
    name: str
    package: str
    description: str
    timeout: float  # seconds per pytest run: 3-5x its plain run on 2 cores
    # test id -> why it is left out of both runs
    deselect: dict[str, str] = field(default_factory=dict)

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # finds, does not import
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"run_compat: package {self.package!r} is not installed in {sys.executable}")
        return Path(list(spec.submodule_search_locations)[0])

    def rootdir(self) -> Path:
        return self.package_dir().parent

    def pytest_args(self) -> list[str]:
        deselect = [f"--deselect={test}" for test in self.deselect]
        if self.name == "joblib":
            return ["--pyargs", "joblib", *deselect]
        if self.name == "pandas-parser":
            return [str(self.package_dir() / "tests" / "io" / "parser"), "--no-strict-data-files", *deselect]
        if self.name == "pyarrow-io":
            tests = self.package_dir() / "tests"
            return [str(tests / name) for name in PYARROW_IO_TESTS] + deselect
        if self.name == "h5py":
            return [str(self.package_dir() / "tests"), *deselect]
        raise ValueError(self.name)

    def rerun_args(self) -> list[str]:
        """Options the suite needs when only some of its test ids are run."""
        return ["--no-strict-data-files"] if self.name == "pandas-parser" else []


# pyarrow's tests that reach the real AWS S3: with no internet here each waits for its connection
# timeouts (about 3 of the suite's 4 minutes, measured) and fails or passes the same in both runs
_NEEDS_AWS = "reaches the real AWS S3 (no internet here: minutes of connection timeouts, same in both runs)"

SUITES = {
    "joblib": Suite(
        "joblib", "joblib", "python -m pytest --pyargs joblib", timeout=720,
        deselect={
            # Seen hanging forever here once (in an audited run; 12 + 12 isolated runs
            # of it passed in both modes): the parent waits in Pool.terminate() for a
            # task-handler thread stuck in the inqueue's put.  A known, open joblib
            # problem ("Random timeout in test_nested_exception_dispatch",
            # joblib/joblib#1034, the same stack), and upstream marks the test xfail
            # (not strict), so it can never count as a failure anyway: a hang would only
            # burn the run's timeout and leave nothing to compare.
            "joblib/test/test_parallel.py::test_nested_exception_dispatch[multiprocessing]":
                "random deadlock in multiprocessing Pool.terminate (joblib/joblib#1034); xfail upstream",
        },
    ),
    "pandas-parser": Suite("pandas-parser", "pandas", "python -m pytest <pandas>/tests/io/parser", timeout=420),
    "pyarrow-io": Suite("pyarrow-io", "pyarrow",
                        "python -m pytest <pyarrow>/tests/{parquet,test_csv,test_json,test_feather,test_orc,test_ipc,"
                        "test_dataset,test_fs,test_io}", timeout=900,
                        deselect={f"pyarrow/tests/test_fs.py::{name}": _NEEDS_AWS for name in (
                            "test_s3_options", "test_s3_finalize", "test_s3_finalize_region_resolver",
                            "test_concurrent_s3fs_init", "test_resolve_s3_region", "test_s3_real_aws",
                            "test_s3_real_aws_region_selection")}),
    "h5py": Suite("h5py", "h5py", "python -m pytest <h5py>/tests", timeout=420),
}
# the parts of pyarrow's shipped tests that go through what the pyarrow hook patches
PYARROW_IO_TESTS = ("parquet", "test_csv.py", "test_json.py", "test_feather.py", "test_orc.py", "test_ipc.py",
                    "test_dataset.py", "test_fs.py", "test_io.py")


# -- one pytest run ----------------------------------------------------------
TEST_TIMEOUT = 300  # seconds one test may take before it counts as failed

@dataclass
class RunResult:
    mode: str
    command: list[str]
    returncode: int | None
    seconds: float
    cpu_seconds: float  # user + system, the run and every process it waited for
    log: Path
    junit: Path
    outcomes: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why this run cannot be evaluated

    def counts(self) -> Counter:
        return Counter(self.outcomes.values())

    def failing(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome in FAILING}

    def counts_text(self) -> str:
        c = self.counts()
        text = (f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, "
                f"{c['xfailed']} xfailed, {c['error']} errors")
        return f"{text} ({len(self.outcomes)} test ids)"


def clean_env() -> dict[str, str]:
    """The inherited environment without what steers OpenTelemetry or pytest."""
    return {
        k: v for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST")
    }


def audited_env(audit_file: Path) -> dict[str, str]:
    env = clean_env()
    env.update({
        "OTEL_SERVICE_NAME": "otel-audit-compat",
        "OTEL_LOGS_EXPORTER": "audit_file",
        "OTEL_PYTHON_AUDIT_FILE": str(audit_file),
        "OTEL_PYTHON_AUDIT_SPOOL_DIR": str(audit_file.parent / "spool"),
        "OTEL_PYTHON_AUDIT_HOOKS": "all",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        # Nothing disabled, whatever the CI environment says: a run with
        # otel_audit disabled would prove nothing.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
    })
    return env


def run_pytest(suite: Suite, mode: str, workdir: Path, test_args: list[str], timeout: float,
               audit_file: Path | None = None) -> RunResult:
    workdir.mkdir(parents=True, exist_ok=True)
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\n")  # empty: no configuration inherited from any parent directory
    junit = workdir / "junit.xml"
    log = workdir / "pytest.log"
    pytest_cmd = [
        sys.executable, "-m", "pytest",
        "-p", "no:cacheprovider", "-q",
        "-c", str(ini), "--rootdir", str(suite.rootdir()),
        "-o", "junit_family=xunit1", f"--junitxml={junit}",
        "--durations=10",
        # A test still running after this long gets every thread's stack dumped to
        # the log (pytest's own faulthandler plugin): a hang can be diagnosed.
        "-o", "faulthandler_timeout=180",
        # ...and after this long it fails (pytest-timeout, SIGALRM in the main thread), so
        # the run goes on: a hang in one mode is a failure like any other, which the rerun
        # step below judges, instead of a killed run that leaves nothing to compare.  (The
        # suite's multiprocessing tests can hang in Pool.terminate(), joblib/joblib#1034.)
        f"--timeout={TEST_TIMEOUT}", "--timeout-method=signal",
        *test_args,
    ]
    if mode == "audited":
        assert audit_file is not None
        command = [str(OPENTELEMETRY_INSTRUMENT), *pytest_cmd]
        env = audited_env(audit_file)
    else:
        command = pytest_cmd
        env = clean_env()
    start = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    problem = None
    with open(log, "wb") as out:
        # Own session: on timeout the whole tree (loky/multiprocessing workers too) is killed.
        process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(process)
            returncode = None
            problem = f"timed out after {timeout:.0f}s"
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    result = RunResult(mode, command, returncode, seconds, cpu_seconds, log, junit, problem=problem)
    if result.problem is None:
        if returncode not in (0, 1):  # 0 all passed, 1 some failed; else interrupted/usage error/no tests
            result.problem = f"pytest exited with status {returncode}"
        try:
            result.outcomes = parse_junit(junit, suite.rootdir())
        except (OSError, ET.ParseError) as exc:
            result.problem = result.problem or f"no usable JUnit report ({type(exc).__name__}: {exc})"
    return result


def _kill_tree(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# -- JUnit XML -> {test id: outcome} ---------------------------------------

def _node_id(testcase: ET.Element, rootdir: Path, module_cache: dict[str, tuple[str, list[str]]]) -> str:
    """Rebuild pytest's node id (``path/to/test_x.py::Class::test[param]``) from a JUnit test case.

    pytest writes ``classname`` = the node id's path, dotted, plus its classes, and
    ``name`` = the test name with its parameters.  The module is the longest
    dotted prefix of ``classname`` that is a file under ``rootdir``.
    """
    classname = testcase.get("classname") or ""
    name = testcase.get("name") or ""
    if not classname:  # a module-level entry (collection error or skip): name is the dotted module
        parts = name.split(".")
        return "/".join(parts) + ".py" if (rootdir / ("/".join(parts) + ".py")).is_file() else name
    if classname not in module_cache:
        parts = classname.split(".")
        for cut in range(len(parts), 0, -1):
            candidate = "/".join(parts[:cut]) + ".py"
            if (rootdir / candidate).is_file():
                module_cache[classname] = (candidate, parts[cut:])
                break
        else:
            file = testcase.get("file")
            module_cache[classname] = (file, []) if file else (classname, [])
    module, classes = module_cache[classname]
    return "::".join([module, *classes, name])


def _outcome(testcase: ET.Element) -> str:
    tags = {child.tag: child for child in testcase}
    if "failure" in tags:
        return "failed"
    if "error" in tags:
        return "error"
    if "skipped" in tags:
        return "xfailed" if tags["skipped"].get("type") == "pytest.xfail" else "skipped"
    return "passed"


def parse_junit(path: Path, rootdir: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    module_cache: dict[str, tuple[str, list[str]]] = {}
    for testcase in ET.parse(path).getroot().iter("testcase"):
        test_id = _node_id(testcase, rootdir, module_cache)
        outcome = _outcome(testcase)
        previous = outcomes.get(test_id)
        if previous is None or OUTCOME_ORDER.index(outcome) > OUTCOME_ORDER.index(previous):
            outcomes[test_id] = outcome
    return outcomes


# -- the audit file ----------------------------------------------------------

def audit_summary(path: Path) -> tuple[int, Counter]:
    """(records, records per audit.api) in an ``audit_file`` sink file (OTLP JSON lines)."""
    records = 0
    apis: Counter = Counter()
    if not path.exists():
        return 0, apis
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                request = json.loads(line)
            except ValueError:
                apis["<unparsable line>"] += 1
                continue
            for resource_logs in request.get("resourceLogs", []):
                for scope_logs in resource_logs.get("scopeLogs", []):
                    for record in scope_logs.get("logRecords", []):
                        records += 1
                        api = "?"
                        for attribute in record.get("attributes", []):
                            if attribute.get("key") == "audit.api":
                                api = attribute.get("value", {}).get("stringValue", "?")
                        apis[api] += 1
    return records, apis


def diagnostics_in(log: Path) -> list[str]:
    """otel-audit's own ``otel-audit: ...`` lines that reached the run's output."""
    lines = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "otel-audit:" in line and line not in lines:
                lines.append(line.rstrip())
    return lines


# -- one suite ---------------------------------------------------------------

def _listed(tests, limit: int = MAX_LISTED) -> str:
    tests = sorted(tests)
    text = "".join(f"      {t}\n" for t in tests[:limit])
    if len(tests) > limit:
        text += f"      ... and {len(tests) - limit} more\n"
    return text


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"      ({exc})"
    return "\n".join(f"      | {line}" for line in text)


def _rerun_target(test_id: str, rootdir: Path) -> str:
    path, sep, rest = test_id.partition("::")
    return str(rootdir / path) + sep + rest


def run_suite(suite: Suite, scratch: Path, timeout: float | None) -> int:
    timeout = timeout or suite.timeout
    print(f"=== {suite.name}: {suite.description}", flush=True)
    print(f"    python: {sys.executable}; rootdir: {suite.rootdir()}", flush=True)
    for test, reason in suite.deselect.items():
        print(f"    deselected in both runs: {test} ({reason})")
    base = scratch / suite.name
    audit_file = base / "otel-audit.jsonl"
    runs = {}
    for mode in ("plain", "audited"):
        print(f"--- {suite.name} [{mode}] running ...", flush=True)
        runs[mode] = run_pytest(suite, mode, base / mode, suite.pytest_args(), timeout, audit_file)
        r = runs[mode]
        print(f"    {mode}: {r.counts_text()}; exit {r.returncode}; {r.seconds:.0f}s wall, {r.cpu_seconds:.0f}s CPU; "
              f"log {r.log}", flush=True)
    plain, audited = runs["plain"], runs["audited"]

    status = 0
    for r in (plain, audited):
        if r.problem:
            print(f"    PROBLEM ({r.mode}): {r.problem}; see {r.log}; its last lines:")
            print(_tail(r.log))
            status = 2
    records, apis = audit_summary(audit_file)
    print(f"    audit file: {records} records ({audit_file.stat().st_size if audit_file.exists() else 0} bytes); "
          f"by audit.api: {dict(apis.most_common())}")
    if records == 0:
        print("    PROBLEM: the audit file is empty: otel-audit was not active in the audited run, "
              "the comparison proves nothing")
        status = 2
    for line in diagnostics_in(audited.log):
        print(f"    otel-audit diagnostic in the audited run: {line}")
    if status == 2:
        return status

    only_audited = audited.failing() - plain.failing()
    only_plain = plain.failing() - audited.failing()
    both = audited.failing() & plain.failing()
    print(f"    failing in both runs: {len(both)}")
    missing = set(plain.outcomes) ^ set(audited.outcomes)
    if missing:
        print(f"    test ids collected in one run only: {len(missing)} (not compared)\n{_listed(missing)}", end="")
    changed = sorted(
        (t, plain.outcomes[t], audited.outcomes[t]) for t in set(plain.outcomes) & set(audited.outcomes)
        if plain.outcomes[t] != audited.outcomes[t]
        and not (plain.outcomes[t] in FAILING and audited.outcomes[t] in FAILING)
        and t not in only_audited | only_plain
    )
    if changed:
        print(f"    other outcome changes (plain -> audited, informational): {len(changed)}")
        for t, a, b in changed[:MAX_LISTED]:
            print(f"      {t}: {a} -> {b}")

    confirmed_audited, confirmed_plain = set(), set()
    if only_audited or only_plain:
        differing = sorted(only_audited | only_plain)
        print(f"    {len(only_audited)} fail only with otel-audit, {len(only_plain)} only without; "
              f"rerunning these {len(differing)} test ids once in both modes to rule out flakiness ...", flush=True)
        targets = [_rerun_target(t, suite.rootdir()) for t in differing]
        rerun_audit_file = base / "otel-audit-rerun.jsonl"
        reruns = {
            mode: run_pytest(suite, mode, base / f"rerun-{mode}", [*targets, *suite.rerun_args()],
                             timeout, rerun_audit_file)
            for mode in ("plain", "audited")
        }
        for mode, r in reruns.items():
            print(f"    rerun {mode}: {r.counts_text()}; {r.seconds:.0f}s wall"
                  + (f"; PROBLEM: {r.problem}" if r.problem else ""))
        rp, ra = reruns["plain"], reruns["audited"]
        if rp.problem or ra.problem:
            # Without a usable rerun nothing can be ruled out: the first runs' differences stand.
            print("    the rerun could not be evaluated: counting the first runs' differences as real")
            rp, ra = plain, audited
        for t in differing:
            p2, a2 = rp.outcomes.get(t), ra.outcomes.get(t)
            if t in only_audited and a2 in FAILING and p2 is not None and p2 not in FAILING:
                confirmed_audited.add(t)
            elif t in only_plain and p2 in FAILING and a2 is not None and a2 not in FAILING:
                confirmed_plain.add(t)
        flaky = set(differing) - confirmed_audited - confirmed_plain
        if flaky:
            print(f"    not reproduced on rerun (flaky or order-dependent; not counted): {len(flaky)}")
            for t in sorted(flaky)[:MAX_LISTED]:
                first = f"{plain.outcomes.get(t)}/{audited.outcomes.get(t)}"
                second = f"{rp.outcomes.get(t, 'not run')}/{ra.outcomes.get(t, 'not run')}"
                print(f"      {t}: plain/audited {first}, rerun {second}")

    print(f"    FAIL ONLY WITH otel-audit: {len(confirmed_audited)}\n{_listed(confirmed_audited)}", end="")
    print(f"    fail only without otel-audit: {len(confirmed_plain)}\n{_listed(confirmed_plain)}", end="")
    if confirmed_audited:
        print(f"    see the audited log: {audited.log}")
        return 1
    print(f"    {suite.name}: same failing set with and without otel-audit")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, JUnit reports, audit files)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per pytest run (default per suite: "
                        + ", ".join(f"{s.name} {s.timeout:.0f}" for s in SUITES.values()) + ")")
    args = parser.parse_args(argv)
    if not OPENTELEMETRY_INSTRUMENT.exists():
        print(f"run_compat: {OPENTELEMETRY_INSTRUMENT} not found (install opentelemetry-distro)", file=sys.stderr)
        return 2

    scratch = Path(tempfile.mkdtemp(prefix="otel-audit-compat-"))
    names = list(SUITES) if args.suite == "all" else [args.suite]
    status = 0
    verdicts = {0: "same failing set", 1: "TESTS FAIL ONLY WITH otel-audit", 2: "NOT EVALUATED"}
    results = []
    start = time.monotonic()
    try:
        for name in names:
            suite_status = run_suite(SUITES[name], scratch, args.timeout)
            results.append(f"{name}: {verdicts[suite_status]}")
            status = max(status, suite_status)
        print(f"=== compat ({time.monotonic() - start:.0f}s): " + "; ".join(results))
    finally:
        keep = args.keep or status != 0
        if keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
