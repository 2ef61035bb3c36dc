"""collector-config/ is a stack that starts and queries what otel-audit really emits.

Two kinds of checks:

* wiring: the collector config only uses components that exist in the pinned
  release and are all connected, the sending queue to Loki is persistent and
  never gives up, compose pins every image and mounts files that exist, Grafana's
  data sources and dashboard reference each other by uids that exist, Loki's
  ruler loads the rules directory compose mounts;
* names: every label or field named by a LogQL query anywhere in the stack (alert
  rules, dashboard panels and variables, data-source links) is a name Loki
  really holds for an otel-audit record: a schema attribute with dots turned into
  underscores (computed from ``otel_audit.schema``, so renaming an attribute
  there breaks this test), one of the few resource labels and Loki-made fields
  listed below, and every value compared with action / outcome / resource type
  is one the schema defines.

The LogQL reading is a small scanner written for these checks (``logql_names``);
the tests at the end show it reports wrong names.  Syntax is Grafana's own
LogQL grammar's to judge (``@grafana/lezer-logql``, pinned in ``tests/logql/``,
installed by ``npm ci`` on first use): every query must parse without an error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from otel_audit import schema

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "collector-config"

# The collector release otelcol.yaml was written and checked for; compose.yaml must run it.
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib"
COLLECTOR_VERSION = "0.147.0"

# Component types that no longer exist in that release (or are deprecated aliases
# of renamed ones): a config naming them would not start, or would warn.
REMOVED_COMPONENT_TYPES = {
    "loki": "exporter removed in v0.131; use otlp_http to Loki's /otlp endpoint",
    "logging": "exporter removed; use debug",
    "jaeger": "exporter removed; Jaeger takes OTLP (otlp_grpc)",
    "jaeger_thrift": "exporter removed; Jaeger takes OTLP (otlp_grpc)",
    "sapm": "exporter removed from the contrib distribution in v0.147",
    "otlphttp": "deprecated alias since v0.144; the exporter is otlp_http",
}
# `otlp` is still the receiver's name; as an exporter it is the deprecated alias of otlp_grpc.
DEPRECATED_EXPORTER_TYPES = {"otlp": "deprecated alias since v0.144; the exporter is otlp_grpc"}

# Resource attributes Loki turns into index labels by default (service.name,
# service.instance.id) that the queries rely on; the SDK always sets both.
RESOURCE_LABELS = {"service_name", "service_instance_id"}
# Fields Loki's OTLP ingestion makes from the log record itself, not from its
# attributes (grafana/loki pkg/loghttp/push/otlp.go): the instrumentation scope
# name, the trace context, the severity.
LOKI_OTLP_FIELDS = {"scope_name", "trace_id", "span_id", "severity_text", "severity_number"}
# Attributes whose values are an enumeration in the schema.
ENUM_VALUES = {
    "audit_action": set(schema.ACTIONS),
    "audit_outcome": set(schema.OUTCOMES),
    "audit_resource_type": set(schema.RESOURCE_TYPES),
    "scope_name": {schema.SCOPE_NAME},
    "audit_policy_decision": set(schema.DECISIONS),
    "audit_lifecycle_event": set(schema.LIFECYCLE_EVENTS) | {""},  # "": an access (no lifecycle event)
}
# Grafana's built-in variables, which are not dashboard variables.
GRAFANA_BUILTIN = re.compile(r"\$\{?__\w+(?:\.\w+)*\}?")


def loki_name(attribute: str) -> str:
    """The name Loki stores an OTLP attribute under: every character but letters, digits and _ becomes _."""
    return re.sub(r"[^A-Za-z0-9_]", "_", attribute)


def known_names() -> set[str]:
    # read from the schema module at call time, so a renamed attribute changes the answer
    return {loki_name(a) for a in schema.ALL_ATTRIBUTES} | RESOURCE_LABELS | LOKI_OTLP_FIELDS


def load_yaml(relative: str):
    return yaml.safe_load((STACK / relative).read_text())


# --------------------------------------------------------------------------- LogQL


@dataclass(frozen=True)
class NameUse:
    """One label or field named by a query: where and how (operator and compared value, if any)."""

    name: str
    operator: str = ""
    value: str | None = None


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<duration>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y)(?:\d+(?:ns|us|µs|ms|s|m|h|d|w|y))*\b)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|=|>|<|\||,|\(|\)|\{|\}|\[|\]|[-+*/%^])
    """,
    re.VERBOSE,
)

# pipeline stages the scanner understands; any other stage keyword is reported
_NAME_LIST_STAGES = {"keep", "drop"}
_UNSUPPORTED_STAGES = {"json", "logfmt", "regexp", "pattern", "unpack", "line_format", "label_format", "decolorize"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_COMPARISON = {"=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="}
# `$__auto`, `$__range`... stand for durations; anything else from Grafana lives inside strings
_GRAFANA_DURATION = re.compile(r"\$__(?:auto|range|interval|rate_interval)\b")


def tokenize(query: str) -> list[tuple[str, str]]:
    query = _GRAFANA_DURATION.sub("5m", query)
    tokens, position = [], 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            raise ValueError(f"cannot read LogQL at {query[position:position + 20]!r} in {query!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def _unquote(token: tuple[str, str]) -> str:
    kind, text = token
    if kind != "string":
        return text
    if text.startswith("`"):
        return text[1:-1]
    return json.loads(text)  # LogQL's double-quoted strings use Go escapes, JSON's for what we use


def logql_names(query: str) -> list[NameUse]:
    """Every label / field name a LogQL query refers to, with its operator and compared value.

    Covers stream selectors, label filters after ``|`` (chained with and / or / ,),
    ``keep`` / ``drop`` / ``unwrap`` stages, and label lists of by / without / on /
    ignoring / group_left / group_right.  Raises ``ValueError`` for a stage it does not
    understand (a parser such as ``| json`` would make up names no schema holds).
    """
    tokens = tokenize(query)
    uses: list[NameUse] = []
    i = 0

    def comparison_at(k: int) -> int:
        # `name op value`: record it and return the index after it
        name, op, value = tokens[k], tokens[k + 1], tokens[k + 2]
        if name[0] != "ident" or op[1] not in _COMPARISON or value[0] not in ("string", "number", "duration"):
            raise ValueError(f"expected `label op value` at {' '.join(t[1] for t in tokens[k:k + 3])!r} in {query!r}")
        uses.append(NameUse(name[1], op[1], _unquote(value)))
        return k + 3

    while i < len(tokens):
        kind, text = tokens[i]
        if text == "{":  # stream selector: {name op "value", ...}
            i += 1
            while tokens[i][1] != "}":
                i = comparison_at(i)
                if tokens[i][1] == ",":
                    i += 1
            i += 1
        elif text == "|":  # a pipeline stage
            stage = tokens[i + 1]
            if stage[1] in _UNSUPPORTED_STAGES:
                raise ValueError(f"stage `| {stage[1]}` is not understood by this check, in {query!r}")
            if stage[1] in _NAME_LIST_STAGES:
                i += 2
                while i < len(tokens) and tokens[i][0] == "ident":
                    uses.append(NameUse(tokens[i][1]))
                    i += 2 if i + 1 < len(tokens) and tokens[i + 1][1] == "," else 1
            elif stage[1] == "unwrap":
                i += 2
                if tokens[i + 1][1] == "(":  # unwrap duration(name) / bytes(name)
                    i += 2
                uses.append(NameUse(tokens[i][1]))
                i += 1
            else:  # label filter expression: a op v (and|or|,) b op w ...
                i = comparison_at(i + 1)
                while i < len(tokens) and tokens[i][1] in ("and", "or", ","):
                    i = comparison_at(i + 1)
        elif kind == "ident" and text in _GROUPING and i + 1 < len(tokens) and tokens[i + 1][1] == "(":
            i += 2
            while tokens[i][1] != ")":
                if tokens[i][0] == "ident":
                    uses.append(NameUse(tokens[i][1]))
                i += 1
            i += 1
        else:
            i += 1
    return uses


def _regex_alternatives(value: str) -> list[str] | None:
    """The literal alternatives of a regex such as ``denied|failure``; None if it is any other regex."""
    alternatives = value.split("|")
    if all(re.fullmatch(r"[A-Za-z0-9_.\-]+", a) and not re.search(r"[.*+?]", a) for a in alternatives):
        return alternatives
    return None


def name_problems(query: str) -> list[str]:
    """What is wrong with the names and enumerated values a query uses (empty: nothing)."""
    problems = []
    allowed = known_names()
    try:
        uses = logql_names(query)
    except ValueError as error:
        return [str(error)]
    for use in uses:
        if use.name not in allowed:
            problems.append(f"{use.name!r} is not a name Loki holds for an audit record")
            continue
        enum = ENUM_VALUES.get(use.name)
        if enum is None or use.value is None or "$" in use.value:
            continue  # not an enumeration, or a dashboard variable (its options are checked on their own)
        if use.operator in ("=", "!="):
            values = [use.value]
        elif use.value in (".+", ".*"):
            continue
        else:
            values = _regex_alternatives(use.value)
            if values is None:
                problems.append(f"{use.name}{use.operator}{use.value!r}: only literal alternatives can be checked")
                continue
        problems += [f"{use.name} compared with {v!r}, not one of {sorted(enum)}" for v in values if v not in enum]
    return problems


# ------------------------------------------------------------ every query in the stack


def _datasources() -> list[dict]:
    return load_yaml("grafana/provisioning/datasources/datasources.yaml")["datasources"]


def _dashboards() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted((STACK / "grafana" / "dashboards").glob("*.json"))]


def _rule_files() -> list[Path]:
    return sorted((STACK / "loki" / "rules").rglob("*.y*ml"))


def _rules() -> list[tuple[str, dict]]:
    found = []
    for path in _rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(f"{path.name}:{rule.get('alert', rule.get('record'))}", rule) for rule in group["rules"]]
    return found


def _panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # rows hold their own panels


def _provisioned(text: str) -> str:
    # `$$` is a literal `$` in Grafana provisioning files
    return text.replace("$$", "$")


def every_logql_query() -> list[tuple[str, str]]:
    """(where, query) for every LogQL query of the stack."""
    queries = [(f"rule {where}", rule["expr"]) for where, rule in _rules()]
    for path, dashboard in _dashboards():
        for panel in _panels(dashboard):
            queries += [(f"{path.name} panel {panel['title']!r}", t["expr"]) for t in panel.get("targets", []) if "expr" in t]
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query" and isinstance(query, dict):
                # a Loki variable: the values of `label`, optionally within `stream`
                queries.append((f"{path.name} variable {variable['name']}", f"{query.get('stream') or ''} by ({query['label']})"))
            elif variable.get("type") == "query":
                queries.append((f"{path.name} variable {variable['name']}", query))
    for source in _datasources():
        for field in source.get("jsonData", {}).get("derivedFields", []):
            if field.get("matcherType") == "label":  # matcherRegex names the label holding the trace id
                queries.append((f"data source {source['name']} derived field {field['name']}", f"by ({field['matcherRegex']})"))
        logs_link = source.get("jsonData", {}).get("tracesToLogsV2", {})
        if logs_link.get("customQuery"):
            queries.append((f"data source {source['name']} tracesToLogsV2", _provisioned(logs_link["query"])))
    # the examples the READMEs offer to copy into Explore
    for readme in (STACK / "README.md", REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md"))):
        for block in re.findall(r"```logql\n(.*?)```", readme.read_text(), re.S):
            queries += [(f"README example {readme.relative_to(REPO)}:{n}", line)
                        for n, line in enumerate(block.strip().splitlines(), 1)]
        # and those written inline in the prose: `{service_name="train"} | audit_outcome="denied"`
        for n, query in enumerate(re.findall(r"`(\{service_name[^`]*)`", readme.read_text()), 1):
            queries.append((f"README example {readme.relative_to(REPO)} inline {n}", query))
    return queries


def test_the_stack_has_queries_of_every_kind():
    places = " ".join(where for where, _ in every_logql_query())
    for kind in ("rule ", "panel ", "variable ", "derived field", "tracesToLogsV2", "README example"):
        assert kind in places, kind


@pytest.mark.parametrize("where,query", every_logql_query(), ids=[w for w, _ in every_logql_query()])
def test_every_query_names_only_what_loki_holds_for_an_audit_record(where, query):
    assert logql_names(query), f"{where}: no label named at all, the scanner missed something"
    assert name_problems(query) == [], where


# ------------------------------------------------------------------------- files


def test_every_yaml_and_json_file_parses():
    files = sorted(p for p in STACK.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 7
    for path in files:
        text = path.read_text()
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        assert document, path


# ----------------------------------------------------------------------- collector

SIGNAL_KINDS = ("receivers", "processors", "exporters", "connectors")


def _collector() -> dict:
    return load_yaml("otelcol.yaml")


def _type(component_id: str) -> str:
    return component_id.split("/")[0]


def test_pipelines_use_defined_components_and_every_component_is_used():
    config = _collector()
    used = {kind: set() for kind in SIGNAL_KINDS}
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}) or component in (config.get("connectors") or {}), (name, kind, component)
                used["connectors" if component in (config.get("connectors") or {}) else kind].add(component)
    for kind in SIGNAL_KINDS:
        assert set(config.get(kind) or {}) == used[kind], f"{kind} defined but in no pipeline: {set(config.get(kind) or {}) - used[kind]}"


def test_extensions_defined_and_listed_agree():
    config = _collector()
    assert set(config["service"].get("extensions", [])) == set(config.get("extensions") or {})


def test_no_removed_or_deprecated_component():
    config = _collector()
    for kind in SIGNAL_KINDS + ("extensions",):
        for component in config.get(kind) or {}:
            assert _type(component) not in REMOVED_COMPONENT_TYPES, (component, REMOVED_COMPONENT_TYPES.get(_type(component)))
    for exporter in config["exporters"]:
        assert _type(exporter) not in DEPRECATED_EXPORTER_TYPES, (exporter, DEPRECATED_EXPORTER_TYPES.get(_type(exporter)))


def test_receivers_listen_on_all_interfaces_on_the_otlp_ports():
    protocols = _collector()["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def test_persistent_queues_use_fsynced_file_storage_and_never_give_up():
    config = _collector()
    queued = {name: exporter for name, exporter in config["exporters"].items() if (exporter or {}).get("sending_queue", {}).get("storage")}
    assert queued, "no exporter has a persistent sending queue"
    for name, exporter in queued.items():
        storage = exporter["sending_queue"]["storage"]
        assert _type(storage) == "file_storage" and storage in config["extensions"], (name, storage)
        assert storage in config["service"]["extensions"], (name, storage)
        assert exporter["sending_queue"].get("enabled", True) is True, name
        retry = exporter.get("retry_on_failure", {})
        assert retry.get("enabled", True) is True and retry.get("max_elapsed_time") in (0, "0", "0s"), (name, retry)
    for name, extension in config["extensions"].items():
        if _type(name) == "file_storage":
            assert extension.get("fsync") is True, name


def test_logs_go_to_loki_with_a_persistent_queue_to_the_archive_and_to_debug():
    config = _collector()
    logs = config["service"]["pipelines"]["logs"]["exporters"]
    by_type = {_type(e): e for e in logs}
    loki = config["exporters"][by_type["otlp_http"]]
    assert loki["endpoint"] == "http://loki:3100/otlp"  # the exporter appends /v1/logs
    assert loki["sending_queue"]["storage"]
    archive = config["exporters"][by_type["file"]]
    assert archive.get("format", "json") == "json" and not archive.get("compression"), "otel-audit show reads OTLP/JSON lines"
    assert archive["rotation"]["max_backups"] > 0
    assert config["exporters"][by_type["debug"]]["verbosity"] == "basic"
    assert "memory_limiter" in config["service"]["pipelines"]["logs"]["processors"]


def test_traces_go_to_jaeger_over_otlp():
    config = _collector()
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    jaeger = [config["exporters"][e] for e in exporters if _type(e) == "otlp_grpc"]
    assert jaeger and jaeger[0]["endpoint"] == "jaeger:4317"


# ------------------------------------------------------------------------- compose


def _compose() -> dict:
    return load_yaml("compose.yaml")


def _image_tag(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # `host:port/name` without a tag
        return image, ""
    return repository, tag


def _mounts(service: dict) -> list[tuple[str, str]]:
    return [tuple(volume.split(":")[:2]) for volume in service.get("volumes", [])]


def _bind_mounts(service: dict) -> list[tuple[str, str]]:
    return [(source, target) for source, target in _mounts(service) if source.startswith((".", "/"))]


def _container_path_mounted_from(service: dict, host_relative: str) -> str | None:
    for source, target in _bind_mounts(service):
        if (STACK / source).resolve() == (STACK / host_relative).resolve():
            return target
    return None


def _published_ports(service: dict) -> set[int]:
    return {int(str(port).split(":")[-2] if ":" in str(port) else port) for port in service.get("ports", [])}


def test_every_image_is_pinned_and_the_collector_is_the_version_the_config_was_written_for():
    services = _compose()["services"]
    for name, service in services.items():
        repository, tag = _image_tag(service["image"])
        assert tag and tag != "latest" and "$" not in service["image"], (name, service["image"])
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (name, tag)
    assert services["otelcol"]["image"] == f"{COLLECTOR_IMAGE}:{COLLECTOR_VERSION}"
    assert f"{COLLECTOR_IMAGE}:{COLLECTOR_VERSION}" in (STACK / "otelcol.yaml").read_text()  # the header says which


def test_stack_has_the_five_services_with_their_ports_published():
    services = _compose()["services"]
    expected = {"otelcol": {4317, 4318}, "loki": {3100}, "grafana": {3000}, "jaeger": {16686}, "alertmanager": {9093}}
    for name, ports in expected.items():
        assert ports <= _published_ports(services[name]), name
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert _image_tag(services["loki"]["image"])[1].startswith("3.")


def test_every_bind_mounted_host_path_exists():
    for name, service in _compose()["services"].items():
        for source, target in _bind_mounts(service):
            assert (STACK / source).exists(), (name, source, target)


def test_collector_runs_the_mounted_config_and_writes_to_named_volumes_it_owns():
    compose = _compose()
    collector = compose["services"]["otelcol"]
    config_path = _container_path_mounted_from(collector, "./otelcol.yaml")
    assert config_path and any(config_path in arg for arg in collector.get("command", [])), "the collector must be started on our file"
    named = {target: source for source, target in _mounts(collector) if not source.startswith((".", "/"))}
    assert set(named.values()) <= set(compose["volumes"])
    config = _collector()
    written = [e["path"] for e in config["exporters"].values() if e and "path" in e]
    written += [x["directory"] for x in config["extensions"].values() if x and "directory" in x]
    for path in written:
        assert any(path.startswith(target.rstrip("/") + "/") or path == target for target in named), f"{path} is on no volume"
    # the image runs as uid 10001; a one-shot service must hand it those volumes first
    if str(collector.get("user", "")).split(":")[0] not in ("0", "root"):
        owners = [
            name for name, condition in collector.get("depends_on", {}).items()
            if condition.get("condition") == "service_completed_successfully"
            and "10001" in " ".join(compose["services"][name]["command"])
            and set(named) <= {target for _, target in _mounts(compose["services"][name])}
        ]
        assert owners, "nothing makes the collector's volumes writable by uid 10001"


# ---------------------------------------------------------------------------- Loki


def test_loki_accepts_otlp_and_its_ruler_loads_the_mounted_rules():
    loki = load_yaml("loki/loki.yaml")
    service = _compose()["services"]["loki"]
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert any(c["schema"] == "v13" and c["store"] == "tsdb" for c in loki["schema_config"]["configs"])
    assert _container_path_mounted_from(service, "./loki/loki.yaml") in " ".join(service["command"])
    ruler = loki["ruler"]
    assert ruler["storage"]["type"] == "local"
    assert _container_path_mounted_from(service, "./loki/rules") == ruler["storage"]["local"]["directory"]
    # without auth Loki's tenant is "fake": its rules are <directory>/fake/*.yaml
    tenant = "fake" if loki.get("auth_enabled") is False else None
    assert tenant and list((STACK / "loki" / "rules" / tenant).glob("*.y*ml"))
    assert set(p.parent.name for p in _rule_files()) == {tenant}
    host = ruler["alertmanager_url"].split("//")[1].split(":")[0]
    assert host in _compose()["services"], ruler["alertmanager_url"]
    assert loki["compactor"]["retention_enabled"] is True and loki["limits_config"]["retention_period"]


def test_every_rule_is_a_complete_alert():
    rules = _rules()
    assert len(rules) >= 4
    for where, rule in rules:
        assert rule.get("alert") and rule.get("expr") and "for" in rule, where
        assert rule.get("labels", {}).get("severity"), where
        assert rule.get("annotations", {}).get("summary"), where


# ------------------------------------------------------------------------- Grafana


def test_data_sources_have_uids_and_link_logs_and_traces_both_ways():
    sources = {s["uid"]: s for s in _datasources()}
    assert all(s.get("uid") for s in _datasources()) and len(sources) == len(_datasources())
    loki = [s for s in sources.values() if s["type"] == "loki"]
    jaeger = [s for s in sources.values() if s["type"] == "jaeger"]
    assert loki and jaeger and any(s["type"] == "alertmanager" for s in sources.values())
    derived = loki[0]["jsonData"]["derivedFields"]
    assert any(f["datasourceUid"] == jaeger[0]["uid"] and f["matcherType"] == "label" and f["matcherRegex"] == "trace_id" for f in derived)
    to_logs = jaeger[0]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == loki[0]["uid"]
    assert "${__trace.traceId}" in _provisioned(to_logs["query"]) and "trace_id" in to_logs["query"]
    for source in sources.values():  # each url names a compose service
        assert source["url"].split("//")[1].split(":")[0] in _compose()["services"], source["url"]


def test_dashboards_are_provisioned_from_the_mounted_directory():
    provider = load_yaml("grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
    grafana = _compose()["services"]["grafana"]
    assert _container_path_mounted_from(grafana, "./grafana/dashboards") == provider["options"]["path"]
    assert _container_path_mounted_from(grafana, "./grafana/provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
    assert _container_path_mounted_from(grafana, "./grafana/provisioning/datasources") == "/etc/grafana/provisioning/datasources"
    assert _dashboards()


def test_every_panel_uses_an_existing_data_source_and_defined_variables():
    uids = {s["uid"] for s in _datasources()}
    for path, dashboard in _dashboards():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        for panel in _panels(dashboard):
            refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for ref in refs:
                if ref:
                    assert ref["uid"] in uids, (path.name, panel["title"], ref)
            for target in panel.get("targets", []):
                used = set(re.findall(r"\$\{?(\w+)", GRAFANA_BUILTIN.sub("", target.get("expr", ""))))
                assert used <= set(variables), (path.name, panel["title"], used - set(variables))
        for name, variable in variables.items():
            if variable.get("datasource"):
                assert variable["datasource"]["uid"] in uids, name


def test_dashboard_filters_by_service_user_and_resource_type_with_schema_values():
    for path, dashboard in _dashboards():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        expressions = " ".join(t.get("expr", "") for p in _panels(dashboard) for t in p.get("targets", []))
        for name in ("service", "user", "resource_type"):
            assert name in variables and f"${name}" in expressions, (path.name, name)
        # a custom variable compared with an enumerated attribute offers only schema values
        for use in (u for _, q in every_logql_query() for u in logql_names(q)):
            if use.name in ENUM_VALUES and use.value and use.value.startswith("$"):
                variable = variables[use.value.strip("${}")]
                assert variable["type"] == "custom", use
                assert {o.strip() for o in variable["query"].split(",")} <= ENUM_VALUES[use.name], use


# ------------------------------------------------ the name check finds wrong names


def test_scanner_reads_selectors_filters_groupings_and_stages():
    query = (
        'sum by (user_name) (count_over_time({service_name="train", service_instance_id=~".+"} |= "x" != "y"'
        ' | audit_action="read" or audit_outcome!="success", file_size > 10 | keep audit_api, user_id [5m] offset 1h))'
        ' unless on (user_name) sum without (error_type) (rate({service_name="a"} | unwrap file_size [1m]))'
    )
    assert {(u.name, u.operator, u.value) for u in logql_names(query)} == {
        ("user_name", "", None), ("service_name", "=", "train"), ("service_instance_id", "=~", ".+"),
        ("audit_action", "=", "read"), ("audit_outcome", "!=", "success"), ("file_size", ">", "10"),
        ("audit_api", "", None), ("user_id", "", None), ("error_type", "", None), ("service_name", "=", "a"),
        ("file_size", "", None),
    }
    assert name_problems(query) == []


@pytest.mark.parametrize(
    "query,wrong",
    [
        ('{service_name="train"} | audit_actor="alice"', "audit_actor"),  # a label filter
        ('sum by (audit_actor) (count_over_time({service_name="train"} [5m]))', "audit_actor"),  # a grouping
        ('{service="train"} | audit_action="read"', "service"),  # a stream selector
        ('{service_name="x"} | audit.action="read"', None),  # dots are not LogQL label syntax at all
        ('{service_name="x"} | keep user, audit_api', "user"),
        ('{service_name="x"} | json | audit_action="read"', "json"),  # a parser would invent names
    ],
)
def test_a_name_loki_does_not_hold_is_reported(query, wrong):
    problems = name_problems(query)
    assert problems, query
    if wrong:
        assert any(wrong in p for p in problems), problems


@pytest.mark.parametrize(
    "query",
    [
        '{service_name="x"} | audit_outcome="refused"',
        '{service_name="x"} | audit_outcome=~"denied|refused"',
        '{service_name="x"} | audit_resource_type="dataset"',
        '{service_name="x"} | audit_action!="download"',
        '{service_name="x"} | audit_action=~"re.d"',  # a regex that cannot be checked is a problem too
        '{service_name="x"} | scope_name="otel-audit"',
    ],
)
def test_a_value_the_schema_does_not_define_is_reported(query):
    assert name_problems(query), query


def test_renaming_an_attribute_in_the_schema_breaks_the_stack_queries(monkeypatch):
    # as if audit.outcome were renamed audit.result in otel_audit/schema.py
    renamed = (schema.ALL_ATTRIBUTES - {schema.AUDIT_OUTCOME}) | {"audit.result"}
    monkeypatch.setattr(schema, "ALL_ATTRIBUTES", renamed)
    broken = [where for where, query in every_logql_query() if any("audit_outcome" in p for p in name_problems(query))]
    assert any(w.startswith("rule ") for w in broken) and any("panel" in w for w in broken), broken


# -- syntax: Grafana's own LogQL grammar -------------------------------------------------

LOGQL_CHECK = Path(__file__).resolve().parent / "logql"  # package.json pins @grafana/lezer-logql
# Grafana replaces these before a query reaches Loki; a duration stands in for them here.
GRAFANA_MACRO = re.compile(r"\$__(auto|interval|range|rate_interval)\b|\$\{__(auto|interval|range|rate_interval)\}")
# What every_logql_query() builds for variables and derived fields only names a label: not a query.
LABEL_ONLY = re.compile(r"^\s*(\{[^}]*\})?\s*by \(\w+\)\s*$")


@pytest.fixture(scope="session")
def logql_syntax_errors():
    """parse(queries) -> for each query, the (from, to) offsets of Grafana's LogQL grammar's syntax errors."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed to check LogQL syntax (Debian: apt-get install nodejs npm)"
    if not (LOGQL_CHECK / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        installed = subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=LOGQL_CHECK,
                                   capture_output=True, text=True, timeout=300)
        assert installed.returncode == 0, f"npm ci in {LOGQL_CHECK} failed:\n{installed.stderr}"

    def parse(queries: list[str]) -> list[list[tuple[int, int]]]:
        done = subprocess.run([node, "parse.mjs"], cwd=LOGQL_CHECK, input=json.dumps(queries),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [[tuple(error) for error in errors] for errors in json.loads(done.stdout)]

    return parse


def test_every_query_parses_with_grafanas_logql_grammar(logql_syntax_errors):
    queries = [(where, GRAFANA_MACRO.sub("5m", query)) for where, query in every_logql_query()
               if not LABEL_ONLY.match(query)]
    assert len(queries) > 20
    errors = logql_syntax_errors([query for _, query in queries])
    broken = {where: (query, found) for (where, query), found in zip(queries, errors) if found}
    assert broken == {}


def test_the_grammar_check_reports_broken_queries(logql_syntax_errors):
    errors = logql_syntax_errors([
        '{service_name="train"} | audit_outcome="denied"',
        '{service_name="train"} | audit_outcome=="denied"',  # == compares numbers, not strings
        'sum by (user_name) (count_over_time({service_name="train"} [5m])',  # a parenthesis short
        '{service_name="train"} | audit_outcome="denied" [$__auto]',  # a Grafana macro left in
    ])
    assert errors[0] == [] and errors[1] == [(40, 48)] and errors[2] == [(64, 64)] and errors[3]
