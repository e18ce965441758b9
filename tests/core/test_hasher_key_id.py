"""The hash key id is part of every pseudonym: validated wherever it comes from, at load time.

``hash.key_id`` is checked by the settings schema; ``$PIIMW_HASH_KEY_ID`` (and the ``_ID`` of
every previous key) must be checked the same way, or registry subjects would not parse and
every signed-in request would fail.
"""

from __future__ import annotations

import pytest

from piimw.config import Config
from piimw.errors import ConfigError
from piimw.registry import is_subject
from piimw.transform import Hasher

KEY = "a-key-of-at-least-16-bytes"
BAD = ["2024.05", "k" * 33, "", "k 1", "k:1", "ké"]


@pytest.mark.parametrize("kid", BAD)
def test_constructor_refuses_a_key_id_a_pseudonym_cannot_carry(kid: str) -> None:
    with pytest.raises(ConfigError, match="key id"):
        Hasher(KEY, kid)


@pytest.mark.parametrize("kid", [k for k in BAD if k])
def test_key_id_from_the_environment_is_validated(kid: str) -> None:
    env = {"PIIMW_HASH_KEY": KEY, "PIIMW_HASH_KEY_ID": kid}
    with pytest.raises(ConfigError, match="PIIMW_HASH_KEY_ID") as raised:
        Hasher.from_env(environ=env)
    assert kid not in str(raised.value).partition("PIIMW_HASH_KEY_ID")[2]

    with pytest.raises(ConfigError, match="PIIMW_HASH_KEY_ID") as raised:
        Config.from_dict({"hash": {"key_env": "PIIMW_HASH_KEY"},
                          "registry": {"url": "memory://kid"}}, environ=env)
    assert raised.value.pointer == "/hash"

    old = {"PIIMW_HASH_KEY": KEY, "OLD_KEY": KEY + "-old", "OLD_KEY_ID": kid}
    with pytest.raises(ConfigError, match="OLD_KEY_ID") as raised:
        Config.from_dict({"hash": {"previous_key_envs": ["OLD_KEY"]}}, environ=old)
    assert raised.value.pointer == "/hash/previous_key_envs/0"


@pytest.mark.parametrize("kid", ["k1", "2024-05", "K_2", "a" * 32])
def test_valid_key_ids_make_registry_subjects(kid: str) -> None:
    hasher = Hasher.from_env(environ={"PIIMW_HASH_KEY": KEY, "PIIMW_HASH_KEY_ID": kid})
    assert hasher.key_id == kid
    assert is_subject(hasher.pseudonym("42", "registry"))
    assert Hasher.from_env(environ={"PIIMW_HASH_KEY": KEY}).key_id == "k1"
    assert Hasher.from_env(key_id="k9", environ={"PIIMW_HASH_KEY": KEY,
                                                 "PIIMW_HASH_KEY_ID": "bad.id"}).key_id == "k9"


def test_an_empty_key_id_variable_counts_as_unset() -> None:
    """``PIIMW_HASH_KEY_ID=${KID}`` with KID unset: the default id, as for the audit key."""
    env = {"PIIMW_HASH_KEY": KEY, "PIIMW_HASH_KEY_ID": ""}
    assert Hasher.from_env(environ=env).key_id == "k1"
    assert Hasher.from_env(key_id="k9", environ=env).key_id == "k9"
    config = Config.from_dict({"hash": {"key_env": "PIIMW_HASH_KEY"},
                               "registry": {"url": "memory://kid-empty"}}, environ=env)
    assert config.hasher is not None
    assert config.hasher.key_id == "k1"
    old = {"PIIMW_HASH_KEY": KEY, "OLD_KEY": KEY + "-old", "OLD_KEY_ID": ""}
    config = Config.from_dict({"hash": {"previous_key_envs": ["OLD_KEY"]}}, environ=old)
    assert [h.key_id for h in config.previous_hashers] == ["k1"]
