"""Descriptors that are not ours to keep: a program that closes every descriptor it did not open
(``os.closerange``, daemonizing, fd-leak tests) and reuses the numbers for its own files must never
find audit frames in them, and no record may be lost.  Real programs under `opentelemetry-instrument`,
real receivers."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import instrumented_env, otel_audit_lines, otlp_env, records_from_jsonl, run_instrumented
from otel_audit import schema

# One audited access (the spool segment, the exporters and the shipper are all up by then), then
# every descriptor above stderr closed, 8 files of the program's own opened on the freed numbers
# and held open during 50 more accesses, each own file written with its own known content.
CLOSERANGE = """
    import os, json, time
    data = os.path.abspath("data.txt")
    with open(data, "w") as handle:          # access 1
        handle.write("x" * 100)
    time.sleep(0.6)                          # its record shipped: exporter connections are open and pooled
    os.closerange(3, 4096)
    mine = [os.open(f"mine-{i}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for i in range(8)]
    for _ in range(50):                      # accesses 2..51
        with open(data) as handle:
            handle.read()
    time.sleep(0.6)                          # shipped again, through whatever the exporters hold now
    for i, fd in enumerate(mine):
        os.write(fd, f"mine {i}\\n".encode())
        os.close(fd)
    print(json.dumps(sorted(mine)))
"""
ACCESSES = 51
# Only the open hook: the program's os.open of its own files must not be an audited access here, or
# its record would be spooled first and otel-audit's renewed segment would take a freed number
# before the program's files could (the os hook's own fail-safety is tested in test_access_points).
ONLY_OPEN = {"OTEL_PYTHON_AUDIT_HOOKS": "open"}


def _run(tmp_path, env):
    (tmp_path / "job.py").write_text(textwrap.dedent(CLOSERANGE))
    result = run_instrumented(tmp_path / "job.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for i in range(8):  # not one byte of anyone else's in the program's files
        assert (tmp_path / f"mine-{i}.bin").read_bytes() == f"mine {i}\n".encode()
    return result


def _assert_every_access_once(records, tmp_path):
    audited = [r for r in records if r["event_name"] == schema.EVENT_NAME]
    seqs = sorted(r["attributes"][schema.AUDIT_SEQ] for r in audited)  # after the lifecycle record "started"
    assert seqs == list(range(2, ACCESSES + 2))
    assert {r["attributes"][schema.AUDIT_API] for r in audited} == {"builtins.open"}
    assert [r["attributes"][schema.AUDIT_ACTION] for r in sorted(
        audited, key=lambda r: r["attributes"][schema.AUDIT_SEQ])] == ["write"] + ["read"] * (ACCESSES - 1)
    assert {r["attributes"][schema.FILE_PATH] for r in audited} == {str(tmp_path / "data.txt")}


@pytest.mark.parametrize("delivery", ["durable", "memory"])
def test_the_audit_file_sink_never_writes_into_the_programs_files(tmp_path, delivery):
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_DELIVERY=delivery, **ONLY_OPEN)
    result = _run(tmp_path, env)
    _assert_every_access_once(records_from_jsonl(trail), tmp_path)
    said = otel_audit_lines(result.stderr)
    if delivery == "durable":  # the spool segment was open and got closed under it: said once, and what follows
        assert len(said) == 2, result.stderr
        assert said[0].startswith("otel-audit: the program closed or reused otel-audit's spool descriptor ")
        assert said[1] == ("otel-audit: the program closes descriptors it did not open: the audit exporters "
                           "were created anew, and their old connections left alone")
    else:  # nothing of otel-audit's was open (the sink opens the trail per batch): nothing to say
        assert said == [], result.stderr


def test_durable_otlp_http_delivery_survives_its_connections_being_closed(tmp_path, http_receiver):
    """The shipper's exporter had a kept-alive connection whose number the program reused: it is
    abandoned without being closed (closing it would close the program's file, now or at exit), a new
    one delivers.  (In memory mode the exporter is the SDK's own, which otel-audit cannot renew: it
    closes such a socket's old number at its next export and at exit.  OTLP over gRPC does not
    survive a program closing its descriptors at all, with or without otel-audit.  Both are in the
    README's known limits.)"""
    result = _run(tmp_path, otlp_env(http_receiver, "http/protobuf", **ONLY_OPEN))
    _assert_every_access_once(http_receiver.wait_for(ACCESSES, timeout=10), tmp_path)
    assert "audit exporters were created anew" in result.stderr


FD_TARGETS = """
    import os, json, sys
    def targets():
        found = []
        for name in os.listdir("/proc/self/fd"):
            try:
                found.append(os.readlink(f"/proc/self/fd/{name}"))
            except OSError:
                pass
        return found
    before = targets()
    with open("data.txt", "w") as handle:
        handle.write("x")
    after = targets()
    print(json.dumps({"before": before, "after": after}))
"""


def test_no_descriptor_of_ours_before_the_first_access_and_one_after(tmp_path):
    trail = tmp_path / "trail.jsonl"
    env = instrumented_env(OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail))
    spool = env["OTEL_PYTHON_AUDIT_SPOOL_DIR"]
    (tmp_path / "job.py").write_text(textwrap.dedent(FD_TARGETS))
    result = run_instrumented(tmp_path / "job.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    ours = lambda targets: [t for t in targets if t.startswith(spool) or t == str(trail)]  # noqa: E731
    assert ours(seen["before"]) == []
    after = ours(seen["after"])
    assert len(after) == 1 and after[0].startswith(spool) and after[0].endswith(".seg"), seen["after"]
    assert len(records_from_jsonl(trail)) == 1
