"""A trail that proves it is whole: the chain, checkpoints and `otel-audit verify`, on trails real
instrumented programs wrote (opentelemetry-instrument, the audit_file sink), then tampered with."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import BIN, instrumented_env, run_instrumented
from otel_audit import schema

WRITER = """
import multiprocessing, os, sys

def touch(name):
    with open(name, "w") as f:
        f.write("x")
    return os.getpid()

if __name__ == "__main__":
    for i in range(int(sys.argv[1])):
        touch(f"file-{i}.txt")
    if len(sys.argv) > 2:
        for method in sys.argv[2].split(","):
            pool = multiprocessing.get_context(method).Pool(2)
            pool.map(touch, [f"{method}-{i}.txt" for i in range(6)])
            pool.close()  # the workers end as workers do (a terminated one is a killed process: unclosed)
            pool.join()
    with open("file-0.txt") as f:
        f.read()
"""


def write_trail(directory: Path, trail: Path, accesses: int = 25, service: str = "svc-a", workers: str = "",
                **settings: str) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    env = instrumented_env(OTEL_SERVICE_NAME=service, OTEL_LOGS_EXPORTER="audit_file", OTEL_PYTHON_AUDIT_FILE=str(trail),
                           OTEL_PYTHON_AUDIT_CHECKPOINT_RECORDS="10", **settings)
    args = [str(accesses)] + ([workers] if workers else [])
    result = run_instrumented(script, *args, cwd=directory, env=env)
    assert result.returncode == 0, result.stderr
    return result


def verify(*paths: Path, options: tuple = (), fmt: str = "json") -> tuple[int, dict | str, str]:
    result = subprocess.run([str(BIN / "otel-audit"), "verify", "--format", fmt, *options, *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    out = json.loads(result.stdout) if fmt == "json" and result.stdout.startswith("{") else result.stdout
    return result.returncode, out, result.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    (directory / "chain.key").write_text(os.urandom(32).hex() + "\n")
    os.chmod(directory / "chain.key", 0o600)
    made = subprocess.run([str(BIN / "otel-audit"), "keygen", "--private", str(directory / "signing.pem"),
                           "--public", str(directory / "signing.pub")], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "key id" in made.stdout and os.stat(directory / "signing.pem").st_mode & 0o777 == 0o600
    again = subprocess.run([str(BIN / "otel-audit"), "keygen", "--private", str(directory / "signing.pem"),
                            "--public", str(directory / "other.pub")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    other = subprocess.run([str(BIN / "otel-audit"), "keygen", "--private", str(directory / "other.pem"),
                            "--public", str(directory / "other.pub")], capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    return directory


@pytest.fixture(scope="module")
def trails(tmp_path_factory, keys):
    """Real trails: keyed and signed (two services in one file), and plain SHA-256."""
    root = tmp_path_factory.mktemp("trails")
    signed = root / "signed.jsonl"
    key_settings = dict(OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE=str(keys / "chain.key"),
                        OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE=str(keys / "signing.pem"))
    write_trail(root / "a", signed, 25, "svc-a", **key_settings)
    write_trail(root / "b", signed, 12, "svc-b", **key_settings)
    plain = root / "plain.jsonl"
    write_trail(root / "p", plain, 25, "svc-plain")
    return {"signed": signed, "plain": plain, "keys": keys, "root": root}


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d, separators=(",", ":")) + "\n" for d in documents))
    return path


def attributes(log: dict) -> dict:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in log.get("attributes", [])}


def located(documents: list[dict], service: str) -> dict[int, tuple[int, int, int, int]]:
    """seq -> (line, resourceLogs, scopeLogs, logRecords) index of each record of ``service``."""
    found = {}
    for n, document in enumerate(documents):
        for r, resource_logs in enumerate(document["resourceLogs"]):
            names = {kv["key"]: next(iter(kv["value"].values())) for kv in resource_logs["resource"]["attributes"]}
            if names["service.name"] != service:
                continue
            for s, scope_logs in enumerate(resource_logs["scopeLogs"]):
                for i, log in enumerate(scope_logs["logRecords"]):
                    found[int(attributes(log)[schema.AUDIT_SEQ])] = (n, r, s, i)
    return found


def record(documents, where) -> dict:
    n, r, s, i = where
    return documents[n]["resourceLogs"][r]["scopeLogs"][s]["logRecords"][i]


def set_attribute(log: dict, key: str, value: dict) -> None:
    for kv in log["attributes"]:
        if kv["key"] == key:
            kv["value"] = value
            return
    raise KeyError(key)


def stream_of(report: dict, service: str) -> dict:
    (stream,) = [s for s in report["streams"] if s["service"] == service]
    return stream


def signed_options(trails) -> tuple:
    return ("--key-file", str(trails["keys"] / "chain.key"), "--public-key", str(trails["keys"] / "signing.pub"))


# -- honest trails ----------------------------------------------------------------------------------

def test_honest_trails_verify_with_and_without_a_key(trails):
    code, report, _ = verify(trails["signed"], options=signed_options(trails))
    assert code == 0 and report["ok"], report
    a, b = stream_of(report, "svc-a"), stream_of(report, "svc-b")  # two services mixed in one file
    # started + 26 accesses, checkpoints every 10 records, stopped... closed by its closing checkpoint
    for stream, accesses in ((a, 26), (b, 13)):
        assert stream["intact"] and stream["closed"] and stream["signatures"] == "verified", stream
        assert stream["algorithm"] == "hmac-sha256"
        assert stream["records"] == stream["last_seq"] == 1 + accesses + stream["checkpoints"]
        assert stream["checkpoints"] == (1 + accesses) // 10 + 1  # every 10 records, and the closing one
        assert not (stream["altered"] or stream["missing"] or stream["inserted"] or stream["unverifiable"])
    code, report, _ = verify(trails["plain"])
    assert code == 0 and stream_of(report, "svc-plain")["algorithm"] == "sha256", report
    code, text, _ = verify(trails["plain"], fmt="text")
    assert code == 0 and "intact, closed" in text and "the trail verifies: 1 streams" in text


def test_a_trail_re_encoded_by_a_collector_still_verifies(trails, tmp_path):
    """Parsed and written again as a collector's file exporter might: other attribute order, spacing, key order."""
    documents = lines_of(trails["signed"])
    rng = random.Random(7)
    for document in documents:
        for resource_logs in document["resourceLogs"]:
            rng.shuffle(resource_logs["resource"]["attributes"])
            for scope_logs in resource_logs["scopeLogs"]:
                for log in scope_logs["logRecords"]:
                    rng.shuffle(log["attributes"])
    path = tmp_path / "re-encoded.jsonl"
    path.write_text("".join(json.dumps(d, indent=1, sort_keys=True).replace("\n", " ") + "\n" for d in documents))
    code, report, _ = verify(path, options=signed_options(trails))
    assert code == 0 and report["ok"], report


def test_lines_in_any_order_and_rotated_parts_verify(trails, tmp_path):
    documents = rebatched(lines_of(trails["signed"]), 4)
    swapped = documents[::-1]
    assert verify(write_lines(tmp_path / "swapped.jsonl", swapped), options=signed_options(trails))[0] == 0
    half = len(documents) // 2
    first, second = write_lines(tmp_path / "part-2.jsonl", documents[half:]), write_lines(tmp_path / "part-1.jsonl", documents[:half])
    code, report, _ = verify(first, second, options=signed_options(trails))
    assert code == 0 and report["ok"], report


def test_a_duplicated_batch_is_at_least_once_delivery_not_an_error(trails, tmp_path):
    documents = lines_of(trails["plain"])
    code, report, _ = verify(write_lines(tmp_path / "dup.jsonl", documents + documents[:1]))
    stream = stream_of(report, "svc-plain")
    assert code == 0 and stream["intact"] and stream["duplicates"] == sum(
        len(s["logRecords"]) for r in documents[0]["resourceLogs"] for s in r["scopeLogs"])
    _, text, _ = verify(tmp_path / "dup.jsonl", fmt="text")
    assert "duplicate copies (at-least-once delivery: not an error)" in text


def test_workers_are_streams_of_their_own_each_closed(tmp_path):
    trail = tmp_path / "workers.jsonl"
    write_trail(tmp_path / "w", trail, 5, "svc-w", workers="fork,spawn")
    code, report, _ = verify(trail)
    assert code == 0, report
    streams = report["streams"]
    assert len(streams) >= 3  # the parent, and at least one worker of each pool
    assert all(s["intact"] and s["closed"] for s in streams), streams


# -- tampering --------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["attribute", "body", "timestamp", "resource"])
def test_an_altered_field_is_named_by_its_seq(trails, tmp_path, field):
    documents = lines_of(trails["signed"])
    places = located(documents, "svc-a")
    log = record(documents, places[5])
    if field == "attribute":
        set_attribute(log, schema.USER_NAME, {"stringValue": "somebody-else"})
        expected = [5]
    elif field == "body":
        log["body"] = {"stringValue": log["body"]["stringValue"].replace("write", "read")}
        expected = [5]
    elif field == "timestamp":
        log["timeUnixNano"] = str(int(log["timeUnixNano"]) + 3_600_000_000_000)
        expected = [5]
    else:
        n, r, _, _ = places[5]
        resource = documents[n]["resourceLogs"][r]["resource"]
        resource["attributes"].append({"key": "host.name", "value": {"stringValue": "elsewhere"}})
        expected = sorted(seq for seq, where in places.items() if where[:2] == (n, r))
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and not report["ok"] and not a["intact"]
    assert a["altered"] == expected and not a["missing"] and not a["inserted"], a
    assert stream_of(report, "svc-b")["intact"]  # the other stream in the same file is untouched


@pytest.mark.parametrize("where", ["middle", "start", "end"])
def test_a_deleted_record_is_missing(trails, tmp_path, where):
    documents = lines_of(trails["signed"])
    places = located(documents, "svc-a")
    last = max(places)
    seq = {"middle": 7, "start": 1, "end": last - 1}[where]
    n, r, s, i = places[seq]
    del documents[n]["resourceLogs"][r]["scopeLogs"][s]["logRecords"][i]
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and a["missing"] == [[seq, seq]] and a["unverifiable"] == [seq + 1], a
    assert not a["altered"] and not a["inserted"] and a["closed"]


def test_a_deleted_closing_record_leaves_the_stream_unclosed(trails, tmp_path):
    documents = lines_of(trails["signed"])
    places = located(documents, "svc-a")
    closing = record(documents, places[max(places)])
    assert closing["eventName"] == schema.CHECKPOINT_EVENT_NAME and attributes(closing)[schema.AUDIT_CHECKPOINT_FINAL]
    n, r, s, i = places[max(places)]
    del documents[n]["resourceLogs"][r]["scopeLogs"][s]["logRecords"][i]
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and a["intact"] and not a["closed"], a
    _, text, _ = verify(tmp_path / "t.jsonl", options=signed_options(trails), fmt="text")
    assert "UNCLOSED (no closing record: the process was killed, or the end was cut off)" in text


def rebatched(documents: list[dict], size: int) -> list[dict]:
    """The same records in lines of at most ``size`` (as a collector batching differently would write them)."""
    out = []
    for document in documents:
        for resource_logs in document["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                logs = scope_logs["logRecords"]
                for start in range(0, len(logs), size):
                    out.append({"resourceLogs": [{**resource_logs, "scopeLogs": [
                        {**scope_logs, "logRecords": logs[start:start + size]}]}]})
    return out


def test_a_deleted_line_is_a_missing_range(trails, tmp_path):
    documents = rebatched(lines_of(trails["plain"]), 5)
    assert verify(write_lines(tmp_path / "honest.jsonl", documents))[0] == 0
    places = located(documents, "svc-plain")
    gone = sorted(seq for seq, where in places.items() if where[0] == 1)
    del documents[1]
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents))
    stream = stream_of(report, "svc-plain")
    assert code == 1 and stream["missing"] == [[gone[0], gone[-1]]], stream


def test_swapped_sequence_numbers_are_altered(trails, tmp_path):
    documents = lines_of(trails["signed"])
    places = located(documents, "svc-a")
    one, two = record(documents, places[8]), record(documents, places[9])
    set_attribute(one, schema.AUDIT_SEQ, {"intValue": "9"})
    set_attribute(two, schema.AUDIT_SEQ, {"intValue": "8"})
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and a["altered"] == [8, 9], a


def test_a_record_copied_from_another_stream_is_inserted(trails, tmp_path):
    documents = lines_of(trails["signed"])
    a_places, b_places = located(documents, "svc-a"), located(documents, "svc-b")
    stranger = copy.deepcopy(record(documents, b_places[4]))
    n, r, s, _ = a_places[4]
    documents[n]["resourceLogs"][r]["scopeLogs"][s]["logRecords"].append(stranger)
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and a["inserted"] == [4] and not a["altered"] and not a["missing"], a
    # and one after the closing record
    documents = lines_of(trails["signed"])
    late = copy.deepcopy(record(documents, b_places[4]))
    set_attribute(late, schema.AUDIT_SEQ, {"intValue": str(max(a_places) + 1)})
    documents[n]["resourceLogs"][r]["scopeLogs"][s]["logRecords"].append(late)
    code, report, _ = verify(write_lines(tmp_path / "t2.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and a["inserted"] == [max(a_places) + 1] and a["closed"], a


def test_a_file_truncated_mid_line_is_said(trails, tmp_path):
    data = trails["plain"].read_bytes()
    path = tmp_path / "t.jsonl"
    path.write_bytes(data[:len(data) - 40])
    code, report, _ = verify(path)
    assert code == 1 and report["truncated"] and not stream_of(report, "svc-plain")["closed"], report
    _, text, _ = verify(path, fmt="text")
    assert "TRUNCATED:" in text and "is cut off" in text


def test_a_wrong_key_fails_loudly(trails, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text(os.urandom(32).hex())
    code, report, _ = verify(trails["signed"], options=("--key-file", str(wrong)))
    assert code == 1
    for stream in report["streams"]:
        assert not stream["intact"] and any("wrong --key-file" in p for p in stream["problems"]), stream
    code, report, _ = verify(trails["signed"])  # keyed, verified without the key: not checked, and not passed
    assert code == 1 and all(s["needs_key"] and not s["intact"] and any("--key-file" in p for p in s["problems"])
                             for s in report["streams"]), report
    code, report, _ = verify(trails["plain"], options=("--key-file", str(wrong)))
    assert code == 1  # a chain that is not keyed is no proof against whoever could rewrite it
    code, report, _ = verify(trails["signed"], options=("--key-file", str(trails["keys"] / "chain.key"),
                                                        "--public-key", str(trails["keys"] / "other.pub")))
    assert code == 1 and all(s["signatures"] == "failed" for s in report["streams"]), report
    code, _, stderr = verify(trails["signed"], options=("--key-file", str(tmp_path / "absent.key")))
    assert code == 2 and "cannot be read" in stderr
    code, report, _ = verify(trails["plain"], options=("--public-key", str(trails["keys"] / "signing.pub")))
    assert code == 1 and any("checkpoints are not signed" in p for p in stream_of(report, "svc-plain")["problems"])


def test_a_forger_who_recomputes_an_unkeyed_chain_is_caught_by_the_signed_checkpoints(trails, tmp_path):
    """Without the chain key's secret a forger cannot recompute HMAC links; with a plain SHA-256 chain they
    can, and only a signature (which needs the private key) catches them: here a signed trail's record is
    edited and every later hash recomputed as if unkeyed, and the next checkpoint's signature gives it away."""
    from otel_audit import chain as audit_chain
    from otel_audit.trail import verify as verifier

    documents = lines_of(trails["signed"])
    places = located(documents, "svc-a")
    set_attribute(record(documents, places[3]), schema.USER_NAME, {"stringValue": "forged"})
    key = audit_chain.load_chain_key(str(trails["keys"] / "chain.key"))  # the forger even has the chain key
    previous = audit_chain.GENESIS
    for seq in sorted(places):
        log = record(documents, places[seq])
        n, r, s, _ = places[seq]
        resource = documents[n]["resourceLogs"][r]
        rows, _ = verifier.records_of_line(json.dumps({"resourceLogs": [{**resource, "scopeLogs": [
            {**resource["scopeLogs"][s], "logRecords": [log]}]}]}), "x")
        previous = audit_chain.next_hash(previous, rows[0].digest, key)
        set_attribute(log, schema.AUDIT_CHAIN_HASH, {"stringValue": previous.hex()})
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents), options=signed_options(trails))
    a = stream_of(report, "svc-a")
    assert code == 1 and not a["altered"] and a["signatures"] == "failed" and a["bad_signatures"], a


def test_an_edit_whose_own_hash_is_recomputed_breaks_the_next_link(trails, tmp_path):
    """In a plain SHA-256 chain anyone can recompute an edited record's own hash; the next record, which chained
    the original, then no longer follows it (the forger must rewrite the whole rest of the chain: that takes
    the signed checkpoints, or the chain key, to catch)."""
    from otel_audit import chain as audit_chain
    from otel_audit.trail import verify as verifier

    documents = lines_of(trails["plain"])
    places = located(documents, "svc-plain")

    def digest(seq: int) -> bytes:
        n, r, s, _ = places[seq]
        resource = documents[n]["resourceLogs"][r]
        rows, _ = verifier.records_of_line(json.dumps({"resourceLogs": [{**resource, "scopeLogs": [
            {**resource["scopeLogs"][s], "logRecords": [record(documents, places[seq])]}]}]}), "x")
        return rows[0].digest

    edited = record(documents, places[5])
    set_attribute(edited, schema.USER_NAME, {"stringValue": "forged"})
    previous = bytes.fromhex(attributes(record(documents, places[4]))[schema.AUDIT_CHAIN_HASH])
    set_attribute(edited, schema.AUDIT_CHAIN_HASH, {"stringValue": audit_chain.next_hash(previous, digest(5), None).hex()})
    code, report, _ = verify(write_lines(tmp_path / "t.jsonl", documents))
    stream = stream_of(report, "svc-plain")
    assert code == 1 and stream["altered"] == [6], stream  # 5 itself now looks right: 6 says it is not


def test_the_canonical_form_is_the_same_from_the_program_and_from_every_serialization():
    """Chain.canonical (the record path's, with its caches) == schema.canonical_record (the definition) == what
    the verifier rebuilds from the OTLP/JSON line the audit_file sink writes of the spooled protobuf, for every
    value type an attribute can have."""
    import hashlib

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_audit import chain as audit_chain
    from otel_audit.trail import verify as verifier
    from otel_audit.delivery.otlp import LogRecordEncoder, export_request, resource_logs_parts
    from otel_audit.delivery.otlp_json import request_line

    chain = audit_chain.Chain()
    encoder = LogRecordEncoder()
    resource = Resource({"service.name": "svc", "service.instance.id": "i-1", "k": 7, "list": ("a", "b")})
    scope = InstrumentationScope("otel_audit", "0.1.0", None, {"audit.schema.version": "1"})
    values = ["", "é\u2028\x00\"q\"", 0, -(1 << 63), (1 << 63) - 1, True, False, 1.5, float("inf"), b"\xff\x00",
              ("a", 1, True), [], {"k": "v", "n": [1, 2]}]
    for i, value in enumerate(values):
        for trace_id, span_id, flags in ((0, 0, 0), (0xABC, 0xDEF, 1)):
            attributes = {"z.last": "z", "value": value, "a.first": 1, schema.AUDIT_SEQ: i + 1,
                          schema.AUDIT_RECORD_ID: f"r-{i}"}
            fields = dict(time_unix_nano=10 + i, observed_time_unix_nano=20 + i, severity_number=13,
                          severity_text="WARN", body=f"body {i}", event_name=schema.EVENT_NAME)
            fast = chain.canonical(resource, "otel_audit", "0.1.0", fields["time_unix_nano"],
                                   fields["observed_time_unix_nano"], 13, "WARN", fields["body"], schema.EVENT_NAME,
                                   trace_id, span_id, flags, attributes)
            assert fast == chain.canonical(resource, "otel_audit", "0.1.0", fields["time_unix_nano"],
                                           fields["observed_time_unix_nano"], 13, "WARN", fields["body"],
                                           schema.EVENT_NAME, trace_id, span_id, flags, attributes)  # from the caches
            reference = schema.canonical_record(
                resource=resource.attributes, scope_name="otel_audit", scope_version="0.1.0",
                trace_id=format(trace_id, "032x") if trace_id else "", span_id=format(span_id, "016x") if span_id else "",
                flags=flags, attributes=attributes, **fields)
            assert fast == reference, value
            head = chain.head(resource, "otel_audit", "0.1.0", 13, "WARN", fields["body"], schema.EVENT_NAME, attributes)
            digest = chain.digest(head, 10 + i, 20 + i, trace_id, span_id, flags, i + 1, f"r-{i}")
            assert digest == hashlib.sha256(fast).digest() == chain.digest(head, 10 + i, 20 + i, trace_id, span_id,
                                                                            flags, i + 1, f"r-{i}")  # (head unchanged)
            attributes[schema.AUDIT_CHAIN_HASH] = chain.link(digest)
            payload = encoder.resource_logs(resource, scope, encoder.log_record(
                timestamp=10 + i, observed_timestamp=20 + i, severity_number=13, severity_text="WARN",
                body=f"body {i}", attributes=attributes, event_name=schema.EVENT_NAME, trace_id=trace_id,
                span_id=span_id, trace_flags=flags))
            line = request_line(export_request([resource_logs_parts(payload)]))
            (row,), _ = verifier.records_of_line(line, "x")
            assert row.digest == hashlib.sha256(fast).digest(), value
            assert row.chain == attributes[schema.AUDIT_CHAIN_HASH]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "otel-audit"), *args], capture_output=True, text=True, timeout=120)


def test_show_and_report_flag_a_trail_that_does_not_verify(trails, tmp_path):
    honest = _cli("show", str(trails["plain"]))
    assert honest.returncode == 0 and "NOT verify" not in honest.stderr, honest.stderr
    documents = lines_of(trails["plain"])
    places = located(documents, "svc-plain")
    set_attribute(record(documents, places[5]), schema.USER_NAME, {"stringValue": "somebody-else"})
    tampered = write_lines(tmp_path / "t.jsonl", documents)
    shown = _cli("show", str(tampered))
    assert shown.returncode == 1 and "somebody-else" in shown.stdout  # every record still shown, and flagged:
    (notice,) = [line for line in shown.stderr.splitlines() if "NOT verify" in line]
    assert "(svc-plain): altered seq 5 (otel-audit verify for details)" in notice
    full = _cli("report", "--format", "json", str(tampered))
    assert full.returncode == 1 and "altered seq 5" in full.stderr
    verified = _cli("report", "--format", "json", "--verified-only", str(tampered))
    assert verified.returncode == 1 and "1 records whose chain does not hold are left out" in verified.stderr
    count = lambda result: json.loads(result.stdout)["summary"]["records"]  # noqa: E731
    assert count(verified) == count(full) - 1
    assert "somebody-else" not in verified.stdout and "somebody-else" in full.stdout
    # a keyed trail read without its key: said, not taken for tampering; with the keys: quiet
    keyed = _cli("show", str(trails["signed"]))
    assert keyed.returncode == 0 and "its chain is keyed: not checked (give --key-file)" in keyed.stderr
    quiet = _cli("show", str(trails["signed"]), *signed_options(trails))
    assert quiet.returncode == 0 and "NOT verify" not in quiet.stderr and "keyed" not in quiet.stderr, quiet.stderr
    assert _cli("report", "--verified-only", str(trails["signed"])).returncode == 1  # nothing could be verified
    skipped = _cli("show", "--no-verify", str(tampered))
    assert skipped.returncode == 0 and skipped.stderr == "otel-audit: the trail's chain is not checked (--no-verify)\n"
    assert _cli("report", "--no-verify", "--verified-only", str(tampered)).returncode == 2


def test_a_killed_process_replayed_by_flush_is_intact_but_unclosed(tmp_path):
    """Durable delivery after a SIGKILL: what the process spooled is delivered by `otel-audit flush` (at least once:
    identical copies), its stream verifies link by link, and says it has no closing record."""
    spool = tmp_path / "spool"
    trail = tmp_path / "trail.jsonl"
    script = tmp_path / "killed.py"
    script.write_text("import os, signal\nfor i in range(30):\n    open(f'f{i}.txt', 'w').close()\n"
                      "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = instrumented_env(OTEL_SERVICE_NAME="svc-killed", OTEL_LOGS_EXPORTER="audit_file",
                           OTEL_PYTHON_AUDIT_FILE=str(trail), OTEL_PYTHON_AUDIT_SPOOL_DIR=str(spool),
                           OTEL_PYTHON_AUDIT_CHECKPOINT_RECORDS="10")
    killed = run_instrumented(script, cwd=tmp_path, env=env)
    assert killed.returncode == -9
    flushed = subprocess.run([str(BIN / "otel-audit"), "flush", "--spool-dir", str(spool)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert flushed.returncode == 0, flushed.stderr
    code, report, _ = verify(trail)
    (stream,) = report["streams"]
    assert code == 1 and stream["intact"] and not stream["closed"], stream
    assert stream["records"] == stream["last_seq"] == 1 + 30 + 3  # started, the accesses, 3 checkpoints
