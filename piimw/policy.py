"""Policy: ``action = f(category, use, sink, consent, environment, route or event type, subject)``.

Order of evaluation: the audit sink never gets PII; consent opt-outs come next (no rule can undo
a user's refusal); then the configured rules, first match wins; then the built-in "no PII"
defaults. Every decision names the rule and a reason code from :data:`REASONS`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from piimw.consent import DEFAULT, Consent
from piimw.findings import ACTIONS, SINKS, Action, Sink
from piimw.taxonomy import Tier, is_within, tier, use_within

#: The closed list of reason codes that findings and audit records may carry.
REASONS: Final = (
    "default.no_pii",
    "default.essential",
    "schema.declared",
    "schema.action",
    "schema.undeclared",
    "schema.invalid",
    "secret.denylist",
    "policy.rule",
    "consent.explicit",
    "capture.disabled",
    "optout.gpc",
    "optout.dnt",
    "optout.header",
    "optout.session",
    "optout.registry",
    "optout.gpp",
    "optout.usprivacy",
    "failclosed.unparseable",
    "failclosed.too_large",
    "failclosed.error",
)

#: Strictness order, used when several categories or a schema action meet a policy decision.
STRICTNESS: Final[dict[str, int]] = {
    "allow": 0, "mask": 1, "hash": 2, "redact": 3, "drop": 4, "reject": 5,
}
REQUEST_SINKS: Final = ("app", "client")


def stricter(a: Action, b: Action) -> Action:
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: str
    reason: str


@dataclass(frozen=True)
class Rule:
    """One configured rule. Empty match lists mean "any". Categories match by prefix."""

    id: str
    action: Action
    categories: tuple[str, ...] = ()
    sinks: tuple[Sink, ...] = ()
    uses: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    tiers: tuple[Tier, ...] = ()
    requires_opt_in: bool = False
    reason: str = "policy.rule"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"rule {self.id!r}: unknown action {self.action!r}")
        for s in self.sinks:
            if s not in SINKS:
                raise ValueError(f"rule {self.id!r}: unknown sink {s!r}")
        if self.reason not in REASONS:
            raise ValueError(f"rule {self.id!r}: unknown reason {self.reason!r}")
        if self.action == "reject" and self.sinks and set(self.sinks) - {"app"}:
            raise ValueError(f"rule {self.id!r}: 'reject' only applies to sink 'app'")

    def matches(
        self, category: str, uses: Sequence[str], sink: str, consent: Consent,
        route: str | None, event_type: str | None,
    ) -> bool:
        if self.sinks and sink not in self.sinks:
            return False
        if self.categories and not any(is_within(category, c) for c in self.categories):
            return False
        if self.tiers and tier(category) not in self.tiers:
            return False
        if self.uses and not any(use_within(u, r) for u in uses for r in self.uses):
            return False
        if self.routes and (route is None or not any(_route_match(route, p) for p in self.routes)):
            return False
        if self.event_types and (event_type is None or event_type not in self.event_types):
            return False
        if self.subjects and consent.subject not in self.subjects:
            return False
        return not self.requires_opt_in or any(
            use_within(u, o) for u in uses for o in consent.opted_in
        )


def _route_match(route: str, pattern: str) -> bool:
    return route == pattern or fnmatch.fnmatchcase(route, pattern)


@dataclass
class Policy:
    """The rules for one environment. Build once; :meth:`decide` is cached per input."""

    rules: Sequence[Rule] = ()
    environment: str = "production"
    _active: tuple[Rule, ...] = field(init=False, repr=False)
    #: Does an active rule name subjects (then a decision depends on the consent's subject)?
    names_subjects: bool = field(init=False, repr=False)
    _cache: dict[tuple[object, ...], Decision] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._active = tuple(
            r for r in self.rules if not r.environments or self.environment in r.environments
        )
        self.names_subjects = any(r.subjects for r in self._active)
        self._cache = {}

    def cache_consent(self, consent: Consent) -> Consent | None:
        """What process-wide caches of decisions (this policy's, the scrubber's) key on for
        ``consent``: itself if it has no subject, else the same consent without it (the same
        decisions, no pseudonym kept after the request); None when a rule names subjects
        (a subject's decisions are made afresh and not kept)."""
        if consent.subject is None:
            return consent
        return None if self.names_subjects else consent.anonymous

    def decide(
        self,
        category: str,
        uses: Sequence[str] = ("essential",),
        sink: Sink = "log",
        consent: Consent = DEFAULT,
        *,
        route: str | None = None,
        event_type: str | None = None,
        declared: bool = True,
        schema_action: Action | None = None,
    ) -> Decision:
        if consent.subject is not None:
            shared = self.cache_consent(consent)
            if shared is None:  # decide afresh, keep nothing
                return self._decide(category, uses, sink, consent, route, event_type,
                                    declared, schema_action)
            consent = shared
        key = (category, tuple(uses), sink, consent, route, event_type, declared, schema_action)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._decide(category, uses, sink, consent, route, event_type, declared,
                               schema_action)
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _decide(
        self, category: str, uses: Sequence[str], sink: Sink, consent: Consent,
        route: str | None, event_type: str | None, declared: bool, schema_action: Action | None,
    ) -> Decision:
        if sink == "audit":
            return Decision("redact", "builtin.audit", "default.no_pii")
        refused = _opt_out(category, uses, consent)
        if refused is not None:
            action: Action = "drop" if sink in ("app", "event", "client") else "redact"
            return Decision(action, "builtin.optout", f"optout.{refused}")
        decision = None
        for rule in self._active:
            if rule.matches(category, uses, sink, consent, route, event_type):
                decision = Decision(rule.action, rule.id, rule.reason)
                break
        if decision is None:
            decision = _default(category, sink, declared, schema_action)
        elif schema_action is not None and sink not in REQUEST_SINKS:
            decision = _tighten(decision, schema_action)
        if decision.action == "reject" and sink != "app":
            decision = Decision("redact", decision.rule, decision.reason)
        return decision


def _opt_out(category: str, uses: Sequence[str], consent: Consent) -> str | None:
    if consent.is_default:
        return None
    by_category = consent.category_opted_out(category)
    if by_category is not None and not any(use_within(u, "essential") for u in uses):
        return by_category
    signals = [consent.opted_out_of(u) for u in uses]
    if signals and all(s is not None for s in signals):
        return signals[0]
    return None


def _default(category: str, sink: Sink, declared: bool, schema_action: Action | None) -> Decision:
    if sink in REQUEST_SINKS:
        if schema_action is not None:
            return Decision(schema_action, "schema", "schema.action")
        if sink == "client" and is_within(category, "user.authorization"):
            # Credentials (writeOnly, format: password, x-pii: secret) never go back out
            # unless a rule or the schema's own action says so.
            return Decision("drop", "builtin.credentials", "secret.denylist")
        if sink == "client" and not declared:
            return Decision("drop", "builtin.undeclared", "schema.undeclared")
        return Decision("allow", "builtin.payload", "schema.declared" if declared
                        else "schema.undeclared")
    reason = "secret.denylist" if is_within(category, "user.authorization") else "default.no_pii"
    decision = Decision("redact", "builtin.no_pii", reason)
    return _tighten(decision, schema_action) if schema_action else decision


def _tighten(decision: Decision, schema_action: Action) -> Decision:
    if STRICTNESS[schema_action] > STRICTNESS[decision.action]:
        return Decision(schema_action, "schema", "schema.action")
    return decision


def strictest(decisions: Iterable[tuple[str, Decision]]) -> tuple[str, Decision]:
    """Of several (category, decision) pairs, the one with the strictest action."""
    best: tuple[str, Decision] | None = None
    for pair in decisions:
        if best is None or STRICTNESS[pair[1].action] > STRICTNESS[best[1].action]:
            best = pair
    if best is None:
        raise ValueError("no decisions")
    return best
