"""The README says what the code does: generated tables, every variable, the two commands, .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

from otel_audit.config import SETTINGS, settings_table_markdown
from otel_audit.schema import schema_table_markdown

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _between(marker: str) -> str:
    return README.split(f"<!-- {marker}:start -->\n")[1].split(f"<!-- {marker}:end -->")[0].strip()


def test_schema_table_is_generated_from_the_schema_module():
    assert _between("schema-table") == schema_table_markdown()


def test_settings_table_is_generated_from_the_config_module():
    assert _between("settings-table") == settings_table_markdown()


def test_every_audit_variable_in_the_code_is_documented():
    used = set()
    for source in (REPO / "otel_audit").rglob("*.py"):
        used.update(re.findall(r"OTEL_PYTHON_AUDIT_[A-Z_]+", source.read_text()))
    documented = {s.env for s in SETTINGS}
    assert used <= documented, used - documented
    for name in documented:
        assert f"| `{name}` |" in README


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```sh\n(.+?)\n```", README.split("## Two commands")[1].split("## Use")[0])
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]
    assert "opentelemetry-instrument" in commands[0] and "OTEL_LOGS_EXPORTER=audit_file" in commands[0]


def test_every_hook_has_a_row_in_the_what_is_audited_table():
    from otel_audit.config import HOOK_NAMES

    table = README.split("## What is audited")[1].split("\nRules:")[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    assert rows == list(HOOK_NAMES)  # every hook, in the order OTEL_PYTHON_AUDIT_HOOKS lists them
