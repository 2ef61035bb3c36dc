"""``python -m otel_audit show FILE...``: print the audit trail the ``audit_file`` sink wrote.

One line per record, oldest first: time, body, and the user-code line that
made the access.  Lines that are not OTLP/JSON are reported with their file
and line number, and never hide the valid ones.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_audit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="print the records in OTLP/JSON lines files")
    show_parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    return show(args.files)


if __name__ == "__main__":
    sys.exit(main())
