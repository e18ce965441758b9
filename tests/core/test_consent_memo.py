"""Consents are memoised values: an equal input gives the very same, correct consent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piimw.consent import DEFAULT, Consent, _merge, _opt_out, _opted_out, from_headers
from piimw.signals import DEFAULT_SETTINGS, _memo_standard, header_consent
from piimw.taxonomy import USES

uses = st.lists(st.sampled_from(USES), max_size=3)
categories = st.lists(st.sampled_from(("user.contact.email", "user.name", "user")), max_size=2)
signals = st.sampled_from(("gpc", "dnt", "header", "session", "registry"))
consents = st.builds(lambda u, c, s, subject: Consent.opt_out(u, c, signal=s, subject=subject),
                     uses, categories, signals, st.sampled_from((None, "hmac:k1.registry:x")))
# Consents built directly too (unsorted sources, opt-ins): merge normalises them.
raw_consents = st.builds(
    lambda u, i, s: Consent(opted_out_uses=frozenset(u), opted_in=frozenset(i),
                            sources=tuple((x, s) for x in reversed(u)), signals=(s, s)),
    uses, uses, signals)


@settings(max_examples=300, deadline=None)
@given(st.one_of(consents, raw_consents), st.one_of(consents, raw_consents))
def test_merge_is_the_computation_and_memoised(a: Consent, b: Consent) -> None:
    merged = a.merge(b)
    assert merged == _merge(a, b)
    if a.subject is None and b.subject is None:
        assert a.merge(b) is merged
        # Equal inputs that are other objects find the same answer.
        assert Consent(**vars_of(a)).merge(Consent(**vars_of(b))) is merged
    else:
        assert a.merge(b) == merged
    assert set(merged.opted_out_uses) == set(a.opted_out_uses) | set(b.opted_out_uses)
    assert not merged.opted_in & merged.opted_out_uses


@settings(max_examples=200, deadline=None)
@given(uses, categories, signals)
def test_opt_out_is_the_computation_and_memoised(u: list[str], c: list[str], s: str) -> None:
    consent = Consent.opt_out(u, c, signal=s)
    assert consent == _opt_out(tuple(u), tuple(c), s, None)
    assert Consent.opt_out(iter(u), tuple(c), signal=s) is consent
    assert consent.signals == ((s,) if u or c else ())


def test_unknown_uses_still_raise_and_are_not_memoised() -> None:
    for _ in range(2):
        try:
            Consent.opt_out(["no-such-use"])
        except ValueError:
            continue
        raise AssertionError("an unknown use was accepted")


def test_a_gpc_header_reads_as_before_and_the_same_consent_serves_every_request() -> None:
    first = header_consent([(b"host", b"x"), (b"sec-gpc", b"1")], DEFAULT_SETTINGS)
    again = header_consent([(b"sec-gpc", b"1"), (b"accept", b"*/*")], DEFAULT_SETTINGS)
    assert first is again
    assert first == from_headers([("sec-gpc", "1")])
    assert first.opted_out_of("marketing") == "gpc"


def test_long_opt_out_values_are_read_but_not_memoised() -> None:
    value = b"analytics," + b" " * 400 + b"marketing"
    before = _memo_standard.cache_info()
    consent = header_consent([(b"x-pii-opt-out", value)], DEFAULT_SETTINGS)
    assert consent.opted_out_of("analytics") == "header"
    assert consent.opted_out_of("marketing") == "header"
    assert header_consent([(b"x-pii-opt-out", value)], DEFAULT_SETTINGS) == consent
    after = _memo_standard.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    assert header_consent([], DEFAULT_SETTINGS) is DEFAULT


def vars_of(consent: Consent) -> dict[str, object]:
    return {k: v for k, v in vars(consent).items() if k != "_hash"}


def test_a_subject_s_consents_are_not_kept_in_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo serves the signals anonymous requests repeat; a registry subject's consent is
    per user and must not outlive its request in a process-wide cache (found by review)."""
    import piimw.consent as consent_module

    memoised: list[object] = []

    def spy(*args: object) -> Consent:
        memoised.append(args)
        return _merge(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(consent_module, "_merged", spy)
    subject = "hmac:k1.registry:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    gpc = Consent.opt_out(["marketing"], signal="gpc")
    mine = Consent.opt_out(["analytics"], signal="registry", subject=subject)
    merged = gpc.merge(mine)
    assert merged.subject == subject
    assert merged.opted_out_uses >= {"marketing", "analytics"}
    assert memoised == []
    assert gpc.merge(gpc) == gpc
    assert len(memoised) == 1  # without a subject: memoised
    # _opted_out's key has no subject at all.
    assert "subject" not in _opted_out.__wrapped__.__code__.co_varnames


def test_caches_key_on_the_consent_without_its_subject() -> None:
    """Policy and scrubber caches: a signed-in user's pseudonym is not kept (found by
    review); decisions are the same, and rules naming subjects still see it."""
    from piimw.engine import Scrubber
    from piimw.policy import Policy, Rule

    subject = "hmac:k1.registry:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    mine = Consent.opt_out(["marketing"], signal="registry", subject=subject)
    assert mine.anonymous.subject is None
    assert mine.anonymous is mine.anonymous
    assert mine.anonymous.opted_out_uses == mine.opted_out_uses
    policy = Policy()
    decision = policy.decide("user.contact.email", ("marketing",), "event", mine)
    assert decision == policy.decide("user.contact.email", ("marketing",), "event",
                                     mine.anonymous)
    assert all(key[3] is None or key[3].subject is None for key in policy._cache)
    scrubber = Scrubber(policy)
    scrubber._decisions_for("log", mine, None, None)
    assert all(key[1].subject is None for key in scrubber._contexts)
    named = Policy([Rule(id="vip", action="allow", categories=("user",), subjects=(subject,))])
    assert named.decide("user.contact.email", ("essential",), "log", mine).rule == "vip"
    assert named.decide("user.contact.email", ("essential",), "log", mine.anonymous).rule \
        != "vip"
    assert all(key[3].subject is None for key in named._cache)  # the subject's: not kept
