"""The access policy: grant or deny each access at the point where it is made.

``OTEL_PYTHON_AUDIT_POLICY`` names a YAML or JSON file::

    default: allow            # or deny: then the rules are an allow-list
    mode: enforce             # or dry-run: nothing refused, records say would_deny
    rules:
      - id: no-pii-for-interns
        effect: deny
        match:                # every key optional; a glob or a list of globs; all given keys must match
          resource: ["s3://ml-prod/pii/*", "/data/pii/*"]
          user: ["intern-*"]
          action: [read]      # also: type, api, enduser, service

Rules are ordered and the first whose every given key matches decides; ``default`` decides when
none does.  A glob is matched case-sensitively against the whole value, ``*`` matching any run of
characters, ``/`` included (``fnmatch``); ``resource`` matches the URI (``file:///data/a.csv``,
``s3://bucket/key``) or, for a local file, its plain path; ``user`` the OS user's name or its
numeric id; ``enduser`` the application's end user (a rule naming it never matches an access
made for no end user).

A policy is loaded and checked whole: :func:`load` raises :class:`PolicyError`, whose message
names the file, the rule (index and id), the field, the bad value and what is accepted.  At run
time a :class:`PolicyGuard` holds the policy in force, reloads it when the file changes (looked
at once a second, by a thread of its own, never on the access path), and answers each access
from a bounded cache of decisions, so that a long policy costs one lookup per access once warm.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from otel_audit import diagnostics, schema

ALLOW, DENY = "allow", "deny"
ENFORCE, DRY_RUN = "enforce", "dry-run"
EFFECTS = (ALLOW, DENY)
MODES = (ENFORCE, DRY_RUN)
# what a rule may match on, and the access's facts it is matched against
MATCH_FIELDS = ("resource", "user", "action", "type", "api", "enduser", "service")
TOP_LEVEL_FIELDS = ("default", "mode", "rules")
RULE_FIELDS = ("id", "effect", "match", "description")
ENUMERATED_FIELDS = {"action": schema.ACTIONS, "type": schema.RESOURCE_TYPES}  # match fields with known values
DEFAULT_RULE = "default"  # audit.policy.rule when no rule matched
UNLOADABLE_RULE = "otel-audit:policy-not-loaded"  # audit.policy.rule of accesses refused for want of a policy
MAX_POLICY_BYTES = 4 * 1024 * 1024
DECISIONS_KEPT = 8192
RELOAD_SECONDS = 1.0


class PolicyError(ValueError):
    """A policy file that cannot be read or is not a valid policy: the message says where and why."""


@dataclass(frozen=True)
class Rule:
    index: int
    id: str
    effect: str
    match: Mapping[str, tuple[str, ...]]  # field -> its globs, as written
    _patterns: Mapping[str, re.Pattern] = field(repr=False, compare=False)

    def mismatch(self, facts: Mapping[str, Any]) -> str | None:
        """The first field of this rule that the access does not match, or ``None`` when it matches."""
        for name, pattern in self._patterns.items():
            values = facts.get(name)
            if not any(value is not None and pattern.fullmatch(value) for value in values or ()):
                return name
        return None


@dataclass(frozen=True)
class Decision:
    effect: str  # allow or deny, as the policy says
    rule: str  # the deciding rule's id, or "default"
    rule_index: int | None  # its position in rules (None for the default)


@dataclass(frozen=True)
class Policy:
    source: str
    default: str
    mode: str
    rules: tuple[Rule, ...]
    digest: str  # sha256 of the file's bytes: which version of the policy decided
    uses_enduser: bool = False

    def decide(self, facts: Mapping[str, Any]) -> Decision:
        """``facts``: each match field -> a tuple of the access's values for it (``resource``: URI and path)."""
        for rule in self.rules:
            if rule.mismatch(facts) is None:
                return Decision(rule.effect, rule.id, rule.index)
        return Decision(self.default, DEFAULT_RULE, None)

    def explain(self, facts: Mapping[str, Any]) -> tuple[Decision, list[str]]:
        """The decision and why, rule by rule up to the one that decides (``otel-audit policy explain``)."""
        lines = []
        for rule in self.rules:
            missed = rule.mismatch(facts)
            if missed is None:
                lines.append(f"rule {rule.index} ({rule.id}): matches -> {rule.effect}")
                return Decision(rule.effect, rule.id, rule.index), lines
            shown = ", ".join(repr(v) for v in facts.get(missed) or ()) or "none"
            lines.append(f"rule {rule.index} ({rule.id}): does not match: {missed} {shown} is not one of "
                         f"{', '.join(rule.match[missed])}")
        lines.append(f"no rule matches -> default: {self.default}")
        return Decision(self.default, DEFAULT_RULE, None), lines


def _where(source: str, index: int | None = None, rule_id: Any = None) -> str:
    where = f"policy {diagnostics.shorten(source)}"
    if index is None:
        return where
    named = f" (id {diagnostics.shorten(rule_id)})" if isinstance(rule_id, str) and rule_id else ""
    return f"{where}: rule {index}{named}"


def _shown(value: Any) -> str:
    """A value from the file as a message quotes it: a string in quotes, anything else as written in JSON."""
    if isinstance(value, str):
        return diagnostics.shorten(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= diagnostics.MAX_VALUE else diagnostics.shorten(text)


def _choice(where: str, name: str, value: Any, accepted: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in accepted:
        raise PolicyError(f"{where}: {name} {_shown(value)} is not accepted; accepted: {', '.join(accepted)}")
    return value.strip().lower()


def _check_mapping(where: str, what: str, value: Any, fields: tuple[str, ...]) -> None:
    """``value`` is a mapping of only ``fields`` (the document, a rule)."""
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: {what} is {_shown(value)}; accepted: a mapping with {', '.join(fields)}")
    unknown = sorted(str(k) for k in value if k not in fields)
    if unknown:
        raise PolicyError(f"{where}: field {_shown(unknown[0])} is not accepted; accepted: {', '.join(fields)}")


def _globs(where: str, name: str, value: Any) -> tuple[str, ...]:
    globs = [value] if isinstance(value, str) else value
    if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g for g in globs):
        raise PolicyError(f"{where}: match.{name} {_shown(value)} is not accepted; accepted: a non-empty glob "
                          "or a non-empty list of them, e.g. \"s3://bucket/pii/*\"")
    return tuple(globs)


def _compile(globs: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), re.DOTALL)


def parse(data: bytes, source: str) -> Policy:
    """A policy from a file's bytes: JSON when its name ends in ``.json``, else YAML (of which JSON is a part)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{_where(source)} is not UTF-8 text (byte {exc.start}); accepted: a YAML or JSON file") from None
    if source.lower().endswith(".json"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{_where(source)} is not valid JSON: {exc}") from None
    else:
        import yaml  # PyYAML, a dependency; only when a policy is configured

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise PolicyError(f"{_where(source)} is not valid YAML: {at}{diagnostics.one_line(problem)}") from None
    where = _where(source)
    _check_mapping(where, "the document", document, TOP_LEVEL_FIELDS)
    default = _choice(where, "default", document.get("default", ALLOW), EFFECTS)
    mode = _choice(where, "mode", document.get("mode", ENFORCE), MODES)
    rules_value = document.get("rules", [])
    if not isinstance(rules_value, list):
        raise PolicyError(f"{where}: rules {_shown(rules_value)} is not accepted; accepted: a list of rules")
    rules, seen = [], set()
    for index, raw in enumerate(rules_value):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        here = _where(source, index, rule_id)
        _check_mapping(here, "the rule", raw, RULE_FIELDS)
        if not isinstance(rule_id, str) or not rule_id.strip():
            raise PolicyError(f"{here}: id {_shown(rule_id)} is not accepted; accepted: a non-empty string naming the rule")
        if rule_id in seen:
            raise PolicyError(f"{here}: id {_shown(rule_id)} is not accepted: another rule has it; accepted: a unique id")
        seen.add(rule_id)
        effect = _choice(here, "effect", raw.get("effect"), EFFECTS)
        match = raw.get("match", {})
        if not isinstance(match, dict):
            raise PolicyError(f"{here}: match {_shown(match)} is not accepted; accepted: a mapping of "
                              f"{', '.join(MATCH_FIELDS)} to globs")
        globs = {}
        for name, value in match.items():
            if name not in MATCH_FIELDS:
                raise PolicyError(f"{here}: match field {_shown(name)} is not accepted; accepted: {', '.join(MATCH_FIELDS)}")
            globs[name] = _globs(here, name, value)
        for name, values in ENUMERATED_FIELDS.items():  # a glob that can match nothing is a typo
            for glob in globs.get(name, ()):
                if not any(fnmatch.fnmatchcase(value, glob) for value in values):
                    raise PolicyError(f"{here}: match.{name} {_shown(glob)} matches no {name}; accepted: "
                                      f"{', '.join(values)} (or a glob of them)")
        rules.append(Rule(index, rule_id, effect, globs, {name: _compile(g) for name, g in globs.items()}))
    return Policy(source, default, mode, tuple(rules), hashlib.sha256(data).hexdigest(),
                  any("enduser" in rule.match for rule in rules))


def _stamp(path: str) -> tuple | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def load(path: str) -> Policy:
    """Read and check the policy file ``path`` (raises :class:`PolicyError`)."""
    try:
        with open(path, "rb") as handle:  # (otel-audit's own reads are not audited: the guard pauses the hooks)
            data = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{_where(path)} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{_where(path)} is larger than {MAX_POLICY_BYTES} bytes; accepted: a policy file up to that size")
    return parse(data, path)


@dataclass(frozen=True)
class Verdict:
    """What the guard answers for one access: the ``audit.policy.*`` attributes, and whether to refuse it."""

    decision: str  # allow, deny, would_deny (dry run), not_enforced (no policy could be loaded, fail-open)
    rule: str
    refuse: bool


class PolicyGuard:
    """The policy in force in this process: decisions for accesses, reloads when the file changes.

    ``on_failure`` is ``OTEL_PYTHON_AUDIT_ON_FAILURE``: ``closed`` refuses every access while no valid
    policy is loaded, ``open`` lets them through, each record saying the policy was not enforced.
    ``mode`` (``OTEL_PYTHON_AUDIT_POLICY_MODE``), when given, overrides the file's mode.
    ``on_change(policy or None, error or None)`` is called when a (re)load changes what is in force.
    """

    def __init__(self, path: str, *, on_failure: str, mode: str | None = None,
                 on_change: Callable[["Policy | None", "str | None"], None] | None = None,
                 read: Callable[[str], Policy] = load):
        self.path = path
        self._on_failure = on_failure
        self._mode = mode
        self._on_change = on_change
        self._read = read
        self._decisions: dict[tuple, Verdict] = {}
        self._stamp: tuple | None = None
        self.policy: Policy | None = None
        self.error: str | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher_pid: int | None = None
        self._lock = threading.Lock()
        self.reload(force=True)
        if hasattr(os, "register_at_fork"):  # threads do not survive fork: the child watches anew
            os.register_at_fork(after_in_child=self._after_fork)

    # -- loading -----------------------------------------------------------
    def reload(self, force: bool = False) -> bool:
        """Load the file again if it changed (or ``force``); True when what is in force changed."""
        with self._lock:
            stamp = _stamp(self.path)
            if not force and stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                policy, error = self._read(self.path), None
            except PolicyError as exc:
                policy, error = None, str(exc)
            except Exception as exc:  # a bug reading it is a policy not loaded, never a crash
                policy, error = None, f"{_where(self.path)} could not be loaded: {type(exc).__name__}: {exc}"
            if not force and policy is not None and self.policy is not None and policy.digest == self.policy.digest:
                return False
            self.policy, self.error = policy, error
            self._decisions = {}
        if self._on_change is not None:
            self._on_change(policy, error)
        return True

    @property
    def mode(self) -> str | None:
        policy = self.policy
        return None if policy is None else self._mode or policy.mode

    def start(self) -> None:
        """Watch the file from a thread of this process (again after fork)."""
        if self._watcher_pid == os.getpid() or self._stopped.is_set():
            return
        self._watcher_pid = os.getpid()
        self._thread = threading.Thread(target=self._watch, name="otel-audit-policy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._watcher_pid = None
        if not self._stopped.is_set():
            self.start()

    def _watch(self) -> None:
        while not self._stopped.wait(RELOAD_SECONDS):
            try:
                self.reload()
            except Exception as exc:  # the watcher must go on
                diagnostics.report_internal_error("reloading the policy", exc)

    # -- deciding ------------------------------------------------------------
    def verdict(self, attributes: Mapping[str, Any], user: tuple[str, ...], service: str,
                enduser: Callable[[], "str | None"]) -> Verdict:
        """The verdict on one access, described by its record's ``attributes``."""
        policy = self.policy
        if policy is None:
            return Verdict(DENY, UNLOADABLE_RULE, True) if self._on_failure == "closed" else \
                Verdict("not_enforced", UNLOADABLE_RULE, False)
        who = enduser() if policy.uses_enduser else None
        key = (attributes.get(schema.AUDIT_RESOURCE_URI), attributes.get(schema.AUDIT_ACTION),
               attributes.get(schema.AUDIT_RESOURCE_TYPE), attributes.get(schema.AUDIT_API), who)
        decisions = self._decisions
        verdict = decisions.get(key)
        if verdict is None:
            facts = {"resource": (key[0], attributes.get(schema.FILE_PATH)), "action": (key[1],), "type": (key[2],),
                     "api": (key[3],), "enduser": (who,), "user": user, "service": (service,)}
            decision = policy.decide(facts)
            if decision.effect == ALLOW:
                verdict = Verdict(ALLOW, decision.rule, False)
            elif self.mode == DRY_RUN:
                verdict = Verdict("would_deny", decision.rule, False)
            else:
                verdict = Verdict(DENY, decision.rule, True)
            if decisions is self._decisions:  # (not replaced by a reload meanwhile)
                if len(decisions) >= DECISIONS_KEPT:
                    decisions.clear()
                decisions[key] = verdict
        return verdict


# -- the command line: otel-audit policy check / explain --------------------------------------------

CHECK_EXIT_HELP = "exit status: 0 the policy is valid; 1 it is not (or cannot be read), said on stderr; 2 usage error"
EXPLAIN_EXIT_HELP = ("exit status: 0 the policy allows the access; 1 it denies it (in a dry run: would deny it); "
                     "2 usage error, or the policy is not valid")


def check_command(path: str, out, err) -> int:
    try:
        policy = load(path)
    except PolicyError as exc:
        print(f"otel-audit: {exc}", file=err)
        return 1
    print(f"{path}: valid: {len(policy.rules)} rule(s), default {policy.default}, mode {policy.mode}, "
          f"sha256 {policy.digest}", file=out)
    for rule in policy.rules:
        matched = "; ".join(f"{name} {', '.join(globs)}" for name, globs in rule.match.items()) or "every access"
        print(f"  {rule.index} {rule.id}: {rule.effect} {matched}", file=out)
    return 0


def explain_command(path: str, *, user: str | None, resource: str, action: str, api: str | None,
                    enduser: str | None, resource_type: str | None, service: str | None, out, err) -> int:
    from otel_audit.config import AuditConfig
    from otel_audit.resources import ResourcePolicy, file_uri

    try:
        policy = load(path)
    except PolicyError as exc:
        print(f"otel-audit: {exc}", file=err)
        return 2
    local = "://" not in resource
    if local or resource.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        plain = os.path.abspath(resource) if local else unquote(urlsplit(resource).path)
        names = (file_uri(plain), plain)
    else:
        plain, names = resource, (resource,)
    if resource_type is None:
        resource_type = ResourcePolicy(AuditConfig()).resource_type(plain, schema.TYPE_DATA, local=local)
    if user is None:
        import getpass

        user = getpass.getuser()
    service = service or os.environ.get("OTEL_SERVICE_NAME") or "unknown_service"
    facts = {"resource": names, "user": (user,), "action": (action,), "type": (resource_type,), "api": (api,),
             "enduser": (enduser,), "service": (service,)}
    decision, lines = policy.explain(facts)
    shown = ", ".join(f"{name}={' or '.join(str(v) for v in values if v is not None) or '(none)'}"
                      for name, values in facts.items())
    print(f"access: {shown}", file=out)
    for line in lines:
        print(f"  {line}", file=out)
    verdict = decision.effect if decision.effect == ALLOW or policy.mode == ENFORCE else "would deny (dry run)"
    print(f"decision: {verdict} (rule {decision.rule})", file=out)
    return 0 if decision.effect == ALLOW else 1
