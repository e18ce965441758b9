"""The registry API, the same suite over memory://, sqlite:/// (a real file) and real Redis."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest
from registry_support import REDIS_URL

from piimw.consent import NON_ESSENTIAL, Consent, from_headers
from piimw.registry import Registry, is_subject
from piimw.stores import Record, StoreError
from piimw.transform import Hasher

MakeRegistry = Callable[..., Registry]


def test_subject_is_a_keyed_pseudonym(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("alice@example.com")
    assert re.fullmatch(r"hmac:t1\.registry:[A-Za-z0-9_-]{43}", subject)
    assert is_subject(subject)
    assert "alice" not in subject
    assert registry.subject_for("alice@example.com") == subject
    assert registry.subject_for(42) == registry.subject_for("42")
    assert registry.subject_for("bob@example.com") != subject
    other_key = Registry("memory://", Hasher("another-key-0123456789", "t1"))
    assert other_key.subject_for("alice@example.com") != subject
    # The registry key is derived per sink: a log pseudonym of the same id differs.
    assert Hasher("registry-test-key-0123456789", "t1").pseudonym("alice@example.com", "log") \
        != subject


def test_raw_ids_are_refused_without_echo(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    for call in (lambda: registry.get("alice@example.com"),
                 lambda: registry.opt_out("alice@example.com", ["marketing"]),
                 lambda: registry.consent_for("alice@example.com")):
        with pytest.raises(ValueError, match="pseudonyms") as info:
            call()
        assert "alice" not in str(info.value)


def test_opt_out_get_clear(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u1")
    assert registry.get(subject).is_default
    record = registry.opt_out(subject, uses=["marketing", "analytics"], categories=["email"],
                              signal="api")
    assert {k[:3] for k in record.out} == {("use", "marketing", "api"),
                                          ("use", "analytics", "api"),
                                          ("category", "user.contact.email", "api")}
    consent = registry.get(subject)
    assert consent.subject == subject
    assert consent.opted_out_uses == {"marketing", "analytics"}
    assert consent.opted_out_categories == {"user.contact.email"}
    assert consent.opted_out_of("marketing.email") == "registry"
    assert consent.opted_out_of("essential") is None
    assert consent.category_opted_out("user.contact.email") == "registry"
    assert registry.clear(subject) is True
    assert registry.get(subject).is_default
    assert registry.clear(subject) is False


def test_essential_cannot_be_opted_out_of(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    with pytest.raises(ValueError, match="essential"):
        registry.opt_out(registry.subject_for("u"), uses=["essential"])
    with pytest.raises(ValueError, match="unknown use"):
        registry.opt_out(registry.subject_for("u"), uses=["no-such-use"])
    with pytest.raises(ValueError, match="unknown data category"):
        registry.opt_out(registry.subject_for("u"), categories=["no.such.category"])


def test_later_choice_wins_per_use(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u2")
    registry.opt_out(subject, uses=["marketing", "third_party"], signal="gpc")
    registry.opt_in(subject, uses=["marketing"])
    consent = registry.get(subject)
    assert consent.opted_out_uses == {"third_party"}  # only marketing was opted back in
    assert consent.opted_in == {"marketing"}
    registry.opt_out(subject, uses=["marketing"], signal="api")  # newer again
    consent = registry.get(subject)
    assert consent.opted_out_uses == {"marketing", "third_party"}
    assert consent.opted_in == frozenset()
    record = registry.record(subject)
    gpc_at = record.out[("use", "marketing", "gpc")]
    in_at = record.opt_in[("use", "marketing")][0]
    api_at = record.out[("use", "marketing", "api")]
    assert gpc_at < in_at < api_at  # every write is later than everything before it


def test_only_new_keeps_first_seen_time(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u3")
    first = registry.opt_out(subject, ["marketing"], signal="gpc", only_new=True)
    again = registry.opt_out(subject, ["marketing"], signal="gpc", only_new=True)
    assert again.out == first.out


def test_set_preferences_replaces_explicit_choices_only(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u4")
    registry.opt_out(subject, ["marketing", "third_party"], signal="gpc")
    registry.set_preferences(subject, opt_out_uses=["analytics"], opt_out_categories=["phone"])
    consent = registry.get(subject)
    assert consent.opted_out_uses == {"marketing", "third_party", "analytics"}
    record = registry.set_preferences(subject, opt_in_uses=["marketing"])
    consent = registry.get(subject)
    assert consent.opted_out_uses == {"third_party"}  # the API's analytics is gone, gpc stays
    assert consent.opted_out_categories == frozenset()
    assert consent.opted_in == {"marketing"}
    doc = record.as_json()
    assert doc["opted_out"]["uses"][0]["name"] == "third_party"
    assert doc["opted_out"]["uses"][0]["signals"] == ["gpc"]
    assert doc["opted_in"]["uses"][0]["name"] == "marketing"
    with pytest.raises(ValueError, match="both"):
        registry.set_preferences(subject, opt_out_uses=["analytics"], opt_in_uses=["analytics"])


def test_consent_for_merges_and_writes_gpc_through(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u5")
    anonymous = registry.consent_for(None, from_headers([("sec-gpc", "1")]))
    assert anonymous.subject is None
    assert anonymous.opted_out_uses == {"marketing", "third_party"}
    # First request with GPC: recorded in the registry (sticky).
    consent = registry.consent_for(subject, from_headers([("sec-gpc", "1")]))
    assert consent.subject == subject
    assert consent.opted_out_of("marketing") == "gpc"  # headers first: gpc won
    assert set(consent.signals) == {"gpc", "registry"}
    # A later request without the signal is still opted out, now by the registry.
    later = registry.consent_for(subject, from_headers([]))
    assert later.opted_out_uses == {"marketing", "third_party"}
    assert later.opted_out_of("third_party") == "registry"
    # The first-seen time is kept: repeated GPC requests do not rewrite the record.
    before = registry.record(subject)
    registry.consent_for(subject, from_headers([("sec-gpc", "1")]))
    assert registry.record(subject) == before
    # A session flag is part of the union.
    session = Consent.opt_out(["analytics"], signal="session")
    merged = registry.consent_for(subject, from_headers([]), session=session)
    assert merged.opted_out_uses == {"marketing", "third_party", "analytics"}
    assert merged.opted_out_of("analytics") == "session"


def test_opt_in_after_the_signal_overrides_it(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u6")
    gpc = from_headers([("sec-gpc", "1")])
    registry.consent_for(subject, gpc)  # GPC recorded at t1
    registry.opt_in(subject, ["marketing"])  # explicit opt-in at t2 > t1
    consent = registry.consent_for(subject, gpc)  # the browser still sends GPC
    assert consent.opted_out_uses == {"third_party"}
    assert consent.opted_in == {"marketing"}
    # DNT also covers marketing and was never recorded: it is not overridden.
    both = registry.consent_for(subject, from_headers([("sec-gpc", "1"), ("dnt", "1")]))
    assert "marketing" in both.opted_out_uses
    # An X-PII-Opt-Out header (reach unknown) is not overridden either.
    header = registry.consent_for(subject, from_headers([("x-pii-opt-out", "marketing")]))
    assert "marketing" in header.opted_out_uses


def test_opt_in_before_the_signal_does_not_override_it(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    subject = registry.subject_for("u7")
    registry.opt_in(subject, ["marketing"])  # t1
    consent = registry.consent_for(subject, from_headers([("sec-gpc", "1")]))  # GPC at t2
    assert consent.opted_out_uses == {"marketing", "third_party"}
    assert consent.opted_in == frozenset()
    assert registry.get(subject).opted_out_uses == {"marketing", "third_party"}


def test_write_through_can_be_disabled(make_registry: MakeRegistry) -> None:
    registry = make_registry(write_through=False)
    subject = registry.subject_for("u8")
    registry.consent_for(subject, from_headers([("sec-gpc", "1")]))
    assert registry.record(subject).empty
    assert registry.consent_for(subject, from_headers([])).is_default


def test_two_instances_see_each_others_changes_at_once(make_registry: MakeRegistry) -> None:
    """Two registries with warm caches (two processes' worth): no stale read, ever."""
    writer, reader = make_registry(), make_registry()
    subject = writer.subject_for("shared")
    deadline = time.monotonic() + 10
    while reader.store.kind == "redis" and not reader.stats()["subscribed"]:
        reader.get(subject)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for i in range(60):
        reader.get(subject)  # warm the reader's cache with the current state
        reader.get(subject)
        if i % 2 == 0:
            writer.opt_out(subject, ["analytics"], signal="api")
            assert reader.get(subject).opted_out_uses == {"analytics"}, i
        else:
            writer.opt_in(subject, ["analytics"])
            assert reader.get(subject).opted_out_uses == frozenset(), i
    if reader.cache is not None:
        assert reader.hits > 0  # the cache was in use, not bypassed


def test_cache_serves_repeated_lookups(make_registry: MakeRegistry, backend: str) -> None:
    registry = make_registry()
    subject = registry.subject_for("c")
    registry.opt_out(subject, ["marketing"])
    deadline = time.monotonic() + 10
    while backend == "redis" and not registry.stats()["subscribed"]:
        registry.get(subject)  # the first lookups start the listener and bypass the cache
        assert time.monotonic() < deadline
        time.sleep(0.01)
    hits = registry.hits
    for _ in range(50):
        assert registry.get(subject).opted_out_uses == {"marketing"}
    if backend == "memory":
        assert registry.cache is None  # nothing to gain in front of a dict
    else:
        assert registry.hits - hits >= 48  # SQLite: the first lookup after a write misses
        assert registry.stats()["cache"] is True


def test_concurrent_threads_never_read_stale(make_registry: MakeRegistry) -> None:
    """Reader threads share one cached registry while another instance writes."""
    writer, reader = make_registry(), make_registry()
    subject = writer.subject_for("threads")
    stale: list[int] = []
    checked = [0]
    progress = {"started": 0, "done": 0}  # writes begun / returned
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            done = progress["done"]
            got = reader.get(subject).opted_out_uses
            if progress["started"] == done:  # no write was in flight: the state is known
                checked[0] += 1
                if got != ({"analytics"} if done % 2 == 1 else frozenset()):
                    stale.append(done)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            progress["started"] += 1
            if i % 2 == 0:
                writer.opt_out(subject, ["analytics"])
            else:
                writer.opt_in(subject, ["analytics"])
            progress["done"] += 1
            time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert stale == []
    assert checked[0] > 100


def test_unreadable_record_fails_closed(make_registry: MakeRegistry, backend: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry(retry_interval=0)
    subject = registry.subject_for("broken")
    registry.opt_out(subject, ["marketing"])

    if backend == "redis":
        import redis as redis_lib

        client = redis_lib.Redis.from_url(REDIS_URL)
        try:
            client.hset(registry.store.key(subject), "garbage", "x")  # type: ignore[attr-defined]
        finally:
            client.close()
    elif backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(registry.store.path)  # type: ignore[attr-defined]
        with conn:
            conn.execute("INSERT INTO piimw_registry VALUES (?, 'garbage', 'x')", (subject,))
        conn.close()
    else:
        registry.store._records[subject] = Record.from_fields(  # type: ignore[attr-defined]
            subject, {})
        with pytest.raises(StoreError):
            Record.from_fields(subject, {"garbage": "x"})
        return
    with caplog.at_level("ERROR", logger="piimw.registry"):
        consent = registry.get(subject)
    assert consent.opted_out_uses == set(NON_ESSENTIAL)
    assert consent.signals == ("registry",)
    assert subject not in caplog.text


def test_from_config(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from piimw.config import Config
    from piimw.errors import ConfigError

    env = {"PIIMW_HASH_KEY": "registry-test-key-0123456789"}
    assert Registry.from_config(Config.from_dict({}, environ=env)) is None
    config = Config.from_dict({"registry": {"url": "memory://cfg", "retry_interval": 0.5},
                               "consent": {"write_through": False}}, environ=env)
    registry = Registry.from_config(config)
    assert registry is not None
    assert registry.write_through is False
    assert registry.retry_interval == 0.5
    registry.close()
    with pytest.raises(ConfigError, match="hash key") as info:
        Registry.from_config(Config.from_dict({"registry": {"url": "memory://"}}, environ={}))
    assert info.value.pointer == "/hash/key_env"
    with pytest.raises(ConfigError, match="environment") as info:
        Registry.from_config(Config.from_dict(
            {"registry": {"url": "redis://:hunter2@127.0.0.1:6379/0"}}, environ=env))
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown setting"):
        Registry.from_config(Config.from_dict({"registry": {"ulr": "memory://"}}, environ=env))
    monkeypatch.setenv("PIIMW_TEST_REGISTRY_URL", "memory://from-env")
    registry = Registry.from_config(Config.from_dict(
        {"registry": {"url_env": "PIIMW_TEST_REGISTRY_URL"}},
        environ={**env, "PIIMW_TEST_REGISTRY_URL": "memory://from-env"}))
    assert registry is not None
    assert registry.store.kind == "memory"
    registry.close()
    with pytest.raises(ConfigError, match="unknown registry backend"):
        Registry("postgres://x", Hasher("registry-test-key-0123456789"))
