"""The ``otel-audit`` command (also ``python -m otel_audit``).

``show FILE...``
    The audit trail as an aligned table, one row per access, oldest first
    across all files: time (UTC), user (``svc (for alice)`` when made for an
    application end user), action, resource type, outcome (with the error
    type), API, call site, and the resource in full.  ``--follow`` keeps
    printing records as they are appended (a truncated or rotated file is read
    again from its start) until Ctrl-C.
``report FILE...``
    Who accessed what: per resource its principals, per principal its
    resources, counts, first and last seen, failures and denials first.
    ``--format text|json|csv|html``, ``--output FILE`` (created ``0600``).
``flush``
    Deliver every record left in the spool by processes that ended (collector
    down at exit, killed, ``os._exit`` workers) through the exporters
    ``OTEL_LOGS_EXPORTER`` names.  Exit 0 only when all were acknowledged;
    otherwise non-zero, with the count left.

``verify FILE... [--key-file K] [--public-key P] [--format text|json]``
    Is the trail whole?  Per stream (one process): intact, or which records are
    altered, missing, inserted or duplicated, and whether it is closed; with
    ``--public-key`` every checkpoint's signature.  Exit 0 only when every
    stream is intact and closed, 1 otherwise, 2 usage (a key file that cannot be used).
``keygen --private FILE --public FILE``
    An Ed25519 key pair for signed checkpoints (``OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE``).

``policy check FILE``
    Validate an access policy file and list its rules.  Exit 0 valid, 1 not.
``policy explain FILE --resource R --action A [--user U] [--api …] [--enduser …]``
    Which rule decides that access and why each earlier one does not match.
    Exit 0 allowed, 1 denied (or would be, in a dry run), 2 usage or invalid policy.

Filters (``show`` and ``report``; repeat one to accept several values):
``--user NAME`` (``user.name`` or ``enduser.id``, globs allowed),
``--resource GLOB`` (the URI, or the local path: ``/data/*.csv``,
``customers.csv``, ``s3://bucket/raw/*``), ``--action``, ``--outcome``,
``--since``/``--until`` (ISO 8601, UTC unless an offset is given, or a duration
before now: ``15m``, ``2h``, ``7d``).

``show`` and ``report`` check the trail's chain as ``verify`` does (``--key-file``,
``--public-key``) and say on stderr, one line per stream, what does not verify;
``report --verified-only`` counts only records whose chain link holds.

FILE ``-`` is standard input.  Exit status: 0; 1 when an input file could not
be read or held lines that are not OTLP/JSON (each named with file and line
on stderr; every readable record is still shown), or the trail's chain shows
records altered, missing or inserted; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from otel_audit import schema
from otel_audit.version import __version__

EXIT_OK, EXIT_INPUT_PROBLEM, EXIT_USAGE = 0, 1, 2
EXIT_STATUS_HELP = ("exit status: 0 ok; 1 an input file unreadable or holding malformed lines (named on stderr "
                    "with file and line; everything readable is still shown); 2 usage error")
FORMATS = ("text", "json", "csv", "html")  # report --format, each rendered by report.render_<format>
FOLLOW_INTERVAL = 0.5  # seconds between polls of followed files


def _error(message: object) -> None:
    from otel_audit.trail.report import visible

    print(f"otel-audit: {visible(message)}", file=sys.stderr, flush=True)


def _time_bound(text: str) -> int:
    from otel_audit.trail import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _filters(args: argparse.Namespace):
    from otel_audit.trail import RecordFilter

    return RecordFilter(users=tuple(args.user or ()), resources=tuple(args.resource or ()),
                        actions=tuple(args.action or ()), outcomes=tuple(args.outcome or ()),
                        since_ns=args.since, until_ns=args.until)


def _report_skipped(trails) -> None:
    for trail in trails:
        if trail.skipped:
            _error(f"{trail.name}: {trail.skipped} log records that are not {schema.EVENT_NAME} events were left out")


class _Stop(Exception):
    """SIGTERM, handled like Ctrl-C: stop following and exit cleanly."""


def _raise_stop(signum, frame):
    raise _Stop()


def show(paths: list[str], filters, follow: bool = False, interval: float = FOLLOW_INTERVAL, *,
         key_file: str | None = None, public_key_file: str | None = None, no_verify: bool = False) -> int:
    from otel_audit.trail.report import show_row, show_table
    from otel_audit.trail import TrailFile, by_time

    checked = check_trail(paths, key_file, public_key_file, no_verify)
    trails = [TrailFile(path) for path in paths]

    def read_all(final: bool):
        found = []
        for trail in trails:
            records, errors, notices = trail.read(final=final)
            for error in errors:
                _error(error)
            for notice in notices:
                _error(notice)
            found.extend(r for r in records if filters.matches(r))
        return by_time(found)

    table = show_table(follow=follow)
    shown_widths = None  # the layout of the last header printed (none yet: nothing was shown)

    def write(records) -> None:
        nonlocal shown_widths
        rows = [show_row(r) for r in records]
        if not rows:
            return  # a header only above something to show
        table.fit(rows)
        lines = [] if table.widths == shown_widths else [table.header()]  # wider values: a new header
        shown_widths = list(table.widths)
        sys.stdout.write("\n".join(lines + [line for row in rows for line in table.line(row)]) + "\n")
        sys.stdout.flush()

    try:
        if follow:
            signal.signal(signal.SIGTERM, _raise_stop)
        write(read_all(final=not follow))
        while follow:
            time.sleep(interval)
            write(read_all(final=False))
    except (KeyboardInterrupt, _Stop):
        pass
    except BrokenPipeError:  # `otel-audit show ... | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK if not any(trail.problems for trail in trails) else EXIT_INPUT_PROBLEM
    finally:
        for trail in trails:
            trail.close()
    _report_skipped(trails)
    problems = sum(trail.problems for trail in trails)
    if problems:
        _error(f"{problems} input problem(s), see above; every record that could be read is shown")
        return EXIT_INPUT_PROBLEM
    return EXIT_INPUT_PROBLEM if checked is not None and checked.tampered else EXIT_OK


def report(paths: list[str], filters, fmt: str, output: str | None, *, key_file: str | None = None,
           public_key_file: str | None = None, verified_only: bool = False, no_verify: bool = False) -> int:
    from otel_audit.trail import report as reports
    from otel_audit.trail import read_trails

    if verified_only and no_verify:
        _error("report: --verified-only needs the chain checked; drop --no-verify")
        return EXIT_USAGE
    checked = check_trail(paths, key_file, public_key_file, no_verify)
    if verified_only and checked is None:
        _error("report --verified-only: the trail could not be checked (see above)")
        return EXIT_USAGE
    records, errors, trails = read_trails(paths)
    left_out = 0
    if verified_only:
        verified = checked.verified_record
        kept = [r for r in records if verified(r.resource_attributes.get("service.instance.id"),
                                               r.attributes.get(schema.AUDIT_SEQ))]
        left_out = len(records) - len(kept)
        if left_out:
            _error(f"report --verified-only: {left_out} records whose chain does not hold are left out")
        records = kept
    for error in errors:
        _error(error)
    _report_skipped(trails)
    files = [{"file": t.name, "records": t.records_read, "skipped_non_audit": t.skipped} for t in trails]
    summary = reports.aggregate([r for r in records if filters.matches(r)], files=files, errors=errors,
                                filters=filters)
    renderers = {"text": reports.render_text, "json": reports.render_json, "csv": reports.render_csv,
                 "html": lambda summary: reports.render_html(summary, time.time_ns())}
    text = renderers[fmt](summary)
    problems = sum(trail.problems for trail in trails)
    try:
        if output is None or output == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            # created owner-only (audit data); newline="": the CSV writer's CRLF row ends are written as they are
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
    except OSError as exc:
        _error(f"cannot write {output or '<stdout>'}: {exc.strerror or exc}")
        return EXIT_INPUT_PROBLEM
    if problems:
        _error(f"{problems} input problem(s), see above; the report covers every record that could be read")
        return EXIT_INPUT_PROBLEM
    return EXIT_INPUT_PROBLEM if left_out or (checked is not None and checked.tampered) else EXIT_OK


FLUSH_EXIT_HELP = ("exit status: 0 every record left in the spool was delivered (or none was left); 1 some "
                   "were not (the count is said: a destination down, one this flush is not configured for, or a "
                   "segment refused as not this user's); 2 usage error, or a spool directory that does not exist "
                   "(other than the default one)")


def flush(spool_dir: str | None, redirect: bool = False) -> int:
    from otel_audit.config import AuditConfig, default_spool_dir
    from otel_audit.delivery import spool
    from otel_audit.delivery.shipper import deliver_orphans, exporters_from_env

    root = spool_dir or AuditConfig.from_env().spool_dir
    if not os.path.isdir(root):
        if os.path.abspath(root) != os.path.abspath(default_spool_dir()):  # a typo must not look like success
            _error(f"flush: the spool directory {root} does not exist (--spool-dir or OTEL_PYTHON_AUDIT_SPOOL_DIR)")
            return EXIT_USAGE
        print(f"otel-audit flush: 0 records delivered from {root} (no spool yet)")
        return EXIT_OK
    services = sorted(os.listdir(root))
    if not any(spool.segments(os.path.join(root, service)) for service in services):
        print(f"otel-audit flush: 0 records delivered from {root} (nothing left in the spool)")
        return EXIT_OK
    exporters = exporters_from_env()  # none configured: every spooled record counts as not delivered
    delivered = left = live = refused = 0
    for service in services:
        directory = os.path.join(root, service)
        if not (os.path.isdir(directory) or os.path.islink(directory)):
            continue  # a stray file: no service's spool (a link is checked, and refused, by deliver_orphans)
        report = deliver_orphans(directory, exporters, count_live=True, redirect=redirect)
        delivered, left, live = delivered + report.delivered, left + report.undelivered, live + report.live
        refused += report.refused
    for exporter in exporters.values():
        exporter.shutdown()
    print(f"otel-audit flush: {delivered} records delivered from {root}"
          + (f"; {live} records belong to running processes, which deliver them" if live else ""))
    status = 0
    if left:
        print(f"otel-audit flush: {left} records NOT delivered (see the errors above); they stay in the spool",
              file=sys.stderr)
        status = 1
    if refused:
        print(f"otel-audit flush: {refused} segments refused: not this user's, or in a directory others can "
              "write to (see above)", file=sys.stderr)
        status = 1
    return status


VERIFY_EXIT_HELP = ("exit status: 0 every stream is intact and closed; 1 not (what is altered, missing, inserted, "
                    "unverifiable or unclosed is said), or a line is unreadable or cut off; 2 usage error, or a file "
                    "or key that cannot be read")


def verify(paths: list[str], key_file: str | None, public_key_file: str | None, fmt: str) -> int:
    import json

    from otel_audit import chain as audit_chain
    from otel_audit.trail import verify as verifier

    try:
        key = audit_chain.load_chain_key(key_file, secret=False) if key_file else None
        public_key = audit_chain.load_public_key(public_key_file) if public_key_file else None
    except (audit_chain.KeyFileError, OSError) as exc:
        _error(f"verify: {exc}")
        return EXIT_USAGE
    try:
        result = verifier.verify(paths, key=key, public_key=public_key, stdin=sys.stdin.buffer)
    except OSError as exc:
        _error(f"verify: cannot read {exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_USAGE
    if fmt == "json":
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        from otel_audit.trail.report import visible

        sys.stdout.write("".join(visible(line) + "\n" for line in verifier.render_text(result).splitlines()))
    return EXIT_OK if result.ok else EXIT_INPUT_PROBLEM


def keygen(private_path: str, public_path: str) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from otel_audit import chain as audit_chain

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except OSError as exc:
            _error(f"keygen: cannot create {path}: {exc.strerror or exc} (an existing key is never overwritten)")
            return EXIT_USAGE
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
    print(f"otel-audit keygen: private key {private_path} (0600: set OTEL_PYTHON_AUDIT_SIGNING_KEY_FILE to it), "
          f"public key {public_path} (for otel-audit verify --public-key), key id {audit_chain.key_id(key.public_key())}")
    return EXIT_OK


def check_trail(paths: list[str], key_file: str | None, public_key_file: str | None, skip: bool = False):
    """``show`` and ``report``: the trail verified (:mod:`otel_audit.trail.verify`), each stream that does not verify
    said in one line on stderr; ``None`` when it could not be checked (standard input, a key that cannot be
    read: said)."""
    from otel_audit import chain as audit_chain
    from otel_audit.trail import verify as verifier

    if skip:
        _error("the trail's chain is not checked (--no-verify)")
        return None
    if "-" in paths:
        _error("the trail's chain is not checked when it is read from standard input (otel-audit verify FILE...)")
        return None
    readable = [path for path in paths if os.path.isfile(path)]  # (the others are reported as they are read)
    try:
        key = audit_chain.load_chain_key(key_file, secret=False) if key_file else None
        public_key = audit_chain.load_public_key(public_key_file) if public_key_file else None
        result = verifier.verify(readable, key=key, public_key=public_key)
    except (audit_chain.KeyFileError, OSError) as exc:
        _error(f"the trail's chain is not checked: {exc}")
        return None
    for line in verifier.problem_lines(result):
        _error(line)
    return result


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="OTLP/JSON lines trail files (the audit_file sink's, the collector file exporter's); - is stdin")
    parser.add_argument("--key-file", metavar="FILE", help="the chain key the trail was written with, to check it")
    parser.add_argument("--public-key", metavar="FILE", help="the public key of the signed checkpoints, to check them")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check the trail's chain (a large trail: otel-audit verify checks it on its own)")
    group = parser.add_argument_group("filters (repeat one to accept several values; all given must match)")
    group.add_argument("--user", action="append", metavar="NAME",
                       help="user.name or enduser.id (glob allowed: 'svc-*')")
    group.add_argument("--resource", action="append", metavar="GLOB",
                       help="resource URI or local path glob: 's3://bucket/raw/*', '/data/*.csv', "
                            "'customers.csv' (any directory), 'data/' (everything under it)")
    group.add_argument("--action", action="append", choices=schema.ACTIONS)
    group.add_argument("--outcome", action="append", choices=schema.OUTCOMES)
    when = ("ISO 8601 time (2024-05-01, 2024-05-01T09:30:00Z; UTC unless an offset is given) "
            "or a duration before now: 30s, 15m, 2h, 7d, 1w")
    group.add_argument("--since", type=_time_bound, metavar="TIME", help=f"records at or after TIME: {when}")
    group.add_argument("--until", type=_time_bound, metavar="TIME", help=f"records before TIME: {when}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="otel-audit", description="otel-audit's command line: read audit trails, deliver the spool",
        epilog=EXIT_STATUS_HELP)
    parser.add_argument("--version", action="version", version=f"otel-audit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser(
        "show", help="the accesses as a table, oldest first", epilog=EXIT_STATUS_HELP,
        description="The accesses in the trail files as an aligned table, oldest first across files: time (UTC), "
                    "user (and end user), action, type, outcome (and error type), API, call site, resource (last, "
                    "in full). Non-printable characters are shown as \\xNN escapes.")
    _add_filters(show_parser)
    show_parser.add_argument("-f", "--follow", action="store_true",
                             help="keep printing records as they are appended (follows truncation and "
                                  "rotation) until Ctrl-C")
    report_parser = commands.add_parser(
        "report", help="who accessed what, failures and denials first", epilog=EXIT_STATUS_HELP,
        description="Per resource its principals, per principal its resources, with counts, first and last "
                    "seen; failures and denials first. A record delivered twice (same audit.record.id) counts once.")
    _add_filters(report_parser)
    report_parser.add_argument("--format", choices=FORMATS, default="text",
                               help="text (default); json (stable structure, see README); csv (one row per "
                                    "resource, user, end user, action, outcome, error type; cells starting with "
                                    "= + - @ get a leading ' against formula injection); html (one "
                                    "self-contained page with a timeline)")
    report_parser.add_argument("-o", "--output", metavar="FILE",
                               help="write there instead of stdout (a new file is created 0600: audit data)")
    report_parser.add_argument("--verified-only", action="store_true",
                               help="count only records whose chain link holds (see otel-audit verify)")
    flush_parser = commands.add_parser(
        "flush", help="deliver what ended processes left in the spool", epilog=FLUSH_EXIT_HELP,
        description="Deliver every record that processes which ended (collector down at exit, killed, os._exit "
                    "workers) left in the spool, through the exporters OTEL_LOGS_EXPORTER names (with the usual "
                    "OTEL_EXPORTER_OTLP_* settings), and delete each segment once every exporter acknowledged it. "
                    "Records are owed to the destinations their process was configured with (exporter and endpoint "
                    "or file): they are delivered only there, and records owed to a destination this flush is not "
                    "configured for stay in the spool, and that is said. Records of running processes are left to "
                    "them (and counted). Segments this user does not own are never delivered.")
    flush_parser.add_argument("--spool-dir", metavar="DIR",
                              help="spool root (default: OTEL_PYTHON_AUDIT_SPOOL_DIR, else "
                                   "$XDG_STATE_HOME/otel-audit/spool); it must exist unless it is the default")
    flush_parser.add_argument("--redirect", action="store_true",
                              help="deliver every record to this flush's exporters, whatever destinations it is owed "
                                   "to, and count it delivered once they acknowledge it")
    verify_parser = commands.add_parser(
        "verify", help="is the trail whole? each stream's chain and checkpoints checked", epilog=VERIFY_EXIT_HELP,
        description="Check the chain (audit.chain.hash) and checkpoints of every stream (one process's records) in "
                    "the trail files, in any order across files: say per stream whether it is intact and closed, "
                    "and which records are altered, missing, inserted, unverifiable or duplicated.")
    verify_parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP/JSON lines trail files; - is stdin")
    verify_parser.add_argument("--key-file", metavar="FILE",
                               help="the chain key (OTEL_PYTHON_AUDIT_CHAIN_KEY_FILE) the trail was written with")
    verify_parser.add_argument("--public-key", metavar="FILE",
                               help="the Ed25519 public key whose private half signed the checkpoints")
    verify_parser.add_argument("--format", choices=("text", "json"), default="text")
    keygen_parser = commands.add_parser(
        "keygen", help="an Ed25519 key pair for signed checkpoints",
        description="Write a new Ed25519 private key (0600) and its public key, each to a file that must not exist.")
    keygen_parser.add_argument("--private", required=True, metavar="FILE")
    keygen_parser.add_argument("--public", required=True, metavar="FILE")
    from otel_audit import policy as access_policy

    policy_parser = commands.add_parser(
        "policy", help="check an access policy file, or explain its decision on an access",
        description="The access policy that OTEL_PYTHON_AUDIT_POLICY names (see the README's Access policy).")
    policy_commands = policy_parser.add_subparsers(dest="policy_command", required=True)
    check_parser = policy_commands.add_parser(
        "check", help="validate a policy file", epilog=access_policy.CHECK_EXIT_HELP,
        description="Load and validate a policy file as otel-audit would, and list its rules in order.")
    check_parser.add_argument("policy_file", metavar="FILE")
    explain_parser = policy_commands.add_parser(
        "explain", help="which rule decides an access, and why", epilog=access_policy.EXPLAIN_EXIT_HELP,
        description="Say which rule of the policy decides the access described, and why each rule before it "
                    "does not match (like kubectl auth can-i).")
    explain_parser.add_argument("policy_file", metavar="FILE")
    explain_parser.add_argument("--resource", required=True,
                                help="a URI (s3://bucket/key, file:///data/a.csv) or a local path (made absolute)")
    explain_parser.add_argument("--action", required=True, choices=schema.ACTIONS)
    explain_parser.add_argument("--user", help="the OS user name (default: yours)")
    explain_parser.add_argument("--api", help="the audited call, e.g. pandas.read_csv (rules on api match only "
                                              "when it is given)")
    explain_parser.add_argument("--enduser", help="the application end user (rules on enduser match only when given)")
    explain_parser.add_argument("--type", dest="resource_type", choices=schema.RESOURCE_TYPES,
                                help="data or model (default: as otel-audit types the resource by its name)")
    explain_parser.add_argument("--service", help="service.name (default: OTEL_SERVICE_NAME, else unknown_service)")
    args = parser.parse_args(argv)
    if args.command == "flush":
        return flush(args.spool_dir, redirect=args.redirect)
    if args.command == "keygen":
        return keygen(args.private, args.public)
    if args.command == "verify":
        if args.files.count("-") > 1:
            parser.error("standard input (-) can be read only once")
        return verify(args.files, args.key_file, args.public_key, args.format)
    if args.command == "policy":
        if args.policy_command == "check":
            return access_policy.check_command(args.policy_file, sys.stdout, sys.stderr)
        return access_policy.explain_command(
            args.policy_file, user=args.user, resource=args.resource, action=args.action, api=args.api,
            enduser=args.enduser, resource_type=args.resource_type, service=args.service, out=sys.stdout, err=sys.stderr)
    if args.files.count("-") > 1:
        parser.error("standard input (-) can be read only once")
    if args.command == "show":
        if args.follow and "-" in args.files:
            parser.error("--follow reads files; for a stream, pipe it without --follow")
        return show(args.files, _filters(args), follow=args.follow, key_file=args.key_file,
                    public_key_file=args.public_key, no_verify=args.no_verify)
    return report(args.files, _filters(args), args.format, args.output, key_file=args.key_file,
                  public_key_file=args.public_key, verified_only=args.verified_only, no_verify=args.no_verify)


if __name__ == "__main__":
    sys.exit(main())
