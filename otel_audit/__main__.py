"""The ``otel-audit`` command (also ``python -m otel_audit``).

``show FILE...``
    Print the audit trail the ``audit_file`` sink wrote: one line per record,
    oldest first (time, body, the user-code line).  Lines that are not
    OTLP/JSON are reported with file and line number and never hide the valid ones.
``flush``
    Deliver every record left in the spool by processes that ended (collector
    down at exit, killed, ``os._exit`` workers) through the exporters
    ``OTEL_LOGS_EXPORTER`` names.  Exit 0 only when all were acknowledged;
    otherwise non-zero, with the count left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone


def _value(any_value: dict):
    (kind, value), = any_value.items() if any_value else (("", ""),)
    return int(value) if kind == "intValue" else value


def iter_records(path: str):
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                for resource_logs in document["resourceLogs"]:
                    for scope_logs in resource_logs.get("scopeLogs", []):
                        for log in scope_logs.get("logRecords", []):
                            attributes = {kv["key"]: _value(kv.get("value", {})) for kv in log.get("attributes", [])}
                            yield int(log.get("timeUnixNano", 0)), _value(log.get("body", {})), attributes
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                print(f"otel-audit: {path}:{number}: not an OTLP/JSON logs line ({type(exc).__name__}: {exc})",
                      file=sys.stderr)


def show(paths: list[str]) -> int:
    records = []
    for path in paths:
        try:
            records.extend(iter_records(path))
        except OSError as exc:
            print(f"otel-audit: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
    for time_ns, body, attributes in sorted(records, key=lambda r: r[0]):
        when = datetime.fromtimestamp(time_ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")
        site = f"{attributes.get('code.file.path', '?')}:{attributes.get('code.line.number', '?')}"
        print(f"{when}  {body}  [{site}]")
    return 0


def flush(spool_dir: str | None) -> int:
    from otel_audit.config import AuditConfig
    from otel_audit.delivery import deliver_orphans, exporters_from_env

    root = spool_dir or AuditConfig.from_env().spool_dir
    exporters = exporters_from_env()  # none configured: every spooled record counts as not delivered
    delivered = left = live = 0
    services = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for service in services:
        report = deliver_orphans(os.path.join(root, service), exporters, count_live=True)
        delivered, left, live = delivered + report.delivered, left + report.undelivered, live + report.live
    for exporter in exporters.values():
        exporter.shutdown()
    print(f"otel-audit flush: {delivered} records delivered from {root}"
          + (f"; {live} records belong to running processes, which deliver them" if live else ""))
    if left:
        print(f"otel-audit flush: {left} records NOT delivered (see the errors above); they stay in the spool",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-audit", description="otel-audit's command line")
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="print the records in OTLP/JSON lines files")
    show_parser.add_argument("files", nargs="+")
    flush_parser = commands.add_parser("flush", help="deliver what ended processes left in the spool")
    flush_parser.add_argument("--spool-dir", help="spool root (default: OTEL_PYTHON_AUDIT_SPOOL_DIR)")
    args = parser.parse_args(argv)
    if args.command == "flush":
        return flush(args.spool_dir)
    return show(args.files)


if __name__ == "__main__":
    sys.exit(main())
