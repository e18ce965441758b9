"""Granular controls: policy rules by subject pseudonym, with consent from the registry."""

from __future__ import annotations

from collections.abc import Callable

from piimw.consent import from_headers
from piimw.policy import Policy, Rule
from piimw.registry import Registry

MakeRegistry = Callable[..., Registry]


def test_rules_by_subject_pseudonym(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    alice, bob = registry.subject_for("alice"), registry.subject_for("bob")
    policy = Policy([
        # Support may see alice's email in logs while her case is open (a subject rule)...
        Rule(id="support-case", action="mask", categories=("user.contact.email",),
             sinks=("log",), subjects=(alice,)),
        # ...and alice agreed to session replay, an analytics capture that needs an opt-in.
        Rule(id="replay", action="allow", categories=("user.contact.email",), sinks=("event",),
             uses=("analytics.replay",), requires_opt_in=True),
    ])
    consent_a = registry.consent_for(alice, from_headers([]))
    consent_b = registry.consent_for(bob, from_headers([]))
    assert policy.decide("user.contact.email", sink="log", consent=consent_a).rule == \
        "support-case"
    assert policy.decide("user.contact.email", sink="log", consent=consent_b).action == "redact"

    # No opt-in yet: the capture rule does not apply.
    replay = ("analytics.replay",)
    assert policy.decide("user.contact.email", replay, "event", consent_a).rule != "replay"
    registry.opt_in(alice, ["analytics.replay"])
    consent_a = registry.consent_for(alice, from_headers([]))
    assert consent_a.opted_in == {"analytics.replay"}
    assert policy.decide("user.contact.email", replay, "event", consent_a).rule == "replay"

    # An opt-out in the registry beats every rule: no rule can undo a refusal.
    registry.opt_out(alice, ["analytics"])
    consent_a = registry.consent_for(alice, from_headers([]))
    decision = policy.decide("user.contact.email", replay, "event", consent_a)
    assert (decision.action, decision.reason) == ("drop", "optout.registry")
    # Category opt-outs from the registry apply to log sinks of that subject too.
    registry.opt_out(alice, categories=["email"])
    consent_a = registry.consent_for(alice, from_headers([]))
    decision = policy.decide("user.contact.email", ("marketing",), "log", consent_a)
    assert (decision.action, decision.reason) == ("redact", "optout.registry")
    # Bob is untouched by alice's record.
    assert registry.consent_for(bob, from_headers([])).is_default


def test_sticky_gpc_decides_with_registry_reason(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    carol = registry.subject_for("carol")
    policy = Policy([Rule(id="ads", action="allow", sinks=("event",), uses=("marketing",))])
    first = registry.consent_for(carol, from_headers([("sec-gpc", "1")]))
    assert policy.decide("user.contact.email", ("marketing",), "event", first).reason == \
        "optout.gpc"
    later = registry.consent_for(carol, from_headers([]))
    assert policy.decide("user.contact.email", ("marketing",), "event", later).reason == \
        "optout.registry"
