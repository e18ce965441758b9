"""Rotating the hash key keeps users' opt-outs: ``hash.previous_key_envs`` and ``adopt``.

Subjects are HMACs of user ids under the hash key; a raw id cannot be recovered from one, so
records written under the old key are only found again when their user is next seen.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi_driver import call
from registry_support import KEY

from piimw.asgi import PIIMiddleware
from piimw.cli import build_parser
from piimw.cli_optout import run
from piimw.config import Config
from piimw.errors import ConfigError
from piimw.registry import Registry
from piimw.transform import Hasher

NEW_KEY = "rotated-registry-key-9876543210"


class AuthMiddleware(PIIMiddleware):
    def user_id(self, scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-test-user", b"").decode() or None


async def echo(scope: Any, receive: Any, send: Any) -> None:
    consent = scope["piimw"].consent
    body = orjson.dumps(sorted(consent.opted_out_uses))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", NEW_KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY_ID", "k2")
    monkeypatch.setenv("PIIMW_HASH_KEY_OLD", KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY_OLD_ID", "k1")


async def test_opt_outs_survive_a_key_rotation(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY_ID", "k1")
    with Registry(url, Hasher(KEY, "k1")) as before:
        old_subject = before.subject_for("alice")
        before.opt_out(old_subject, ["analytics"], signal="api")
    alice = [("x-test-user", "alice")]

    _rotate(monkeypatch)
    forgotten = AuthMiddleware(echo, {"registry": {"url": url}})
    assert (await call(forgotten, "GET", "/x", headers=alice)).json() == []  # the bug

    app = AuthMiddleware(echo, {"registry": {"url": url},
                                "hash": {"previous_key_envs": ["PIIMW_HASH_KEY_OLD"]}})
    assert (await call(app, "GET", "/x", headers=alice)).json() == ["analytics"]
    with Registry(url, Hasher(NEW_KEY, "k2")) as after:
        new_subject = after.subject_for("alice")
        assert new_subject.startswith("hmac:k2.registry:")
        assert after.get(new_subject).opted_out_uses == {"analytics"}
        assert after.record(old_subject).empty  # moved, not copied
    # Without the previous key (the rotation over) the record is where it belongs now.
    assert (await call(forgotten, "GET", "/x", headers=alice)).json() == ["analytics"]
    assert (await call(app, "GET", "/x", headers=[("x-test-user", "bob")])).json() == []


def test_a_moved_record_merges_with_the_current_one(store_url: str,
                                                    request: pytest.FixtureRequest) -> None:
    """On every backend (memory, SQLite, the real Redis)."""
    prefix = request.getfixturevalue("redis_prefix") if store_url.startswith("redis") \
        else "piimw"
    old, new = Hasher(KEY, "k1"), Hasher(NEW_KEY, "k2")
    with Registry(store_url, old, key_prefix=prefix) as before:
        s = before.subject_for("carol")
        before.opt_out(s, ["marketing"], signal="api")
        before.opt_in(s, ["analytics"], signal="api")
    with Registry(store_url, new, previous_hashers=[old], key_prefix=prefix) as registry:
        current = registry.subject_for("carol")
        registry.opt_out(current, ["analytics"], signal="gpc")  # after the old opt-in
        assert registry.adopt("carol") == current
        consent = registry.get(current)
        assert consent.opted_out_uses == {"marketing", "analytics"}  # the later entry wins
        assert registry.adopt("carol") == current  # nothing left to move
        assert registry.record(s).empty


def test_previous_key_variables_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", NEW_KEY)
    monkeypatch.delenv("PIIMW_HASH_KEY_OLD", raising=False)
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"hash": {"previous_key_envs": ["PIIMW_HASH_KEY_OLD"]}})
    assert e.value.pointer == "/hash/previous_key_envs/0"
    assert "PIIMW_HASH_KEY_OLD" in str(e.value)
    monkeypatch.setenv("PIIMW_HASH_KEY_OLD", "Xq9z!")  # too short, and never echoed
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"hash": {"previous_key_envs": ["PIIMW_HASH_KEY_OLD"]}})
    assert e.value.pointer == "/hash/previous_key_envs/0"
    assert "Xq9z!" not in str(e.value)


def test_an_unreachable_registry_is_left_alone() -> None:
    registry = Registry("redis://127.0.0.1:1/0", Hasher(NEW_KEY, "k2"),
                        previous_hashers=[Hasher(KEY, "k1")], timeout=0.2)
    with registry:
        assert registry.adopt("dave") == registry.subject_for("dave")


def test_operators_cli_moves_the_record_too(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Registry(url, Hasher(KEY, "k1")) as before:
        before.opt_out(before.subject_for("erin"), ["analytics"], signal="api")
    _rotate(monkeypatch)
    settings = tmp_path / "piimw.toml"
    settings.write_text(f'[hash]\nprevious_key_envs = ["PIIMW_HASH_KEY_OLD"]\n\n'
                        f'[registry]\nurl = "{url}"\n', "utf-8")
    out = io.StringIO()
    args = build_parser().parse_args(["optout", "get", "--config", str(settings),
                                      "--user-stdin"])
    assert run(args, stdin=io.StringIO("erin\n"), stdout=out) == 0
    doc = orjson.loads(out.getvalue())
    assert doc["subject"].startswith("hmac:k2.registry:")
    assert [u["name"] for u in doc["opted_out"]["uses"]] == ["analytics"]
