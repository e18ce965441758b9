"""What an action does to one value: redact, mask, keyed hash (drop and reject are structural).

Transforms keep the JSON type a schema expects where they can: a masked integer stays an integer.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import orjson

from piimw.errors import ConfigError, KeyMissingError
from piimw.keyed_sha256 import KeyedSha256
from piimw.taxonomy import is_within, label


class _Drop:
    """Sentinel: remove the key (or the array element) that held the value."""

    _instance: _Drop | None = None

    def __new__(cls) -> _Drop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()


@lru_cache(maxsize=1024)
def redact_token(category: str) -> str:
    """The placeholder written in place of a redacted value, e.g. ``[REDACTED:email]``."""
    return f"[REDACTED:{label(category)}]"


def _stars(n: int) -> str:
    return "*" * max(n, 3)


def mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return mask_generic(value)
    return f"{local[0]}***@{domain}"


_ASCII_DIGITS_TO_STARS = str.maketrans("0123456789", "*" * 10)
_ASCII_ONLY_DIGITS = {c: None for c in range(128) if not 0x30 <= c <= 0x39}


def mask_digits(value: str, keep: int = 4) -> str:
    """Replace every digit but the last ``keep`` with ``*``, keeping separators."""
    if value.isascii():  # the common case, without a per-character Python loop
        stars = value.translate(_ASCII_DIGITS_TO_STARS)
        if keep <= 0 or len(value.translate(_ASCII_ONLY_DIGITS)) <= keep:
            return stars
        seen = 0
        for i in range(len(value) - 1, -1, -1):
            if value[i] in "0123456789":
                seen += 1
                if seen == keep:  # hidden before i; from i on the last ``keep`` digits stay
                    return stars[:i] + value[i:]
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    hide = digits[:len(digits) - keep] if len(digits) > keep else digits
    if not hide:
        return value
    chars = list(value)
    for i in hide:
        chars[i] = "*"
    return "".join(chars)


def mask_generic(value: str) -> str:
    if len(value) <= 2:
        return _stars(3)
    return value[0] + _stars(len(value) - 1)


def mask_string(value: str, category: str) -> str:
    """Mask for humans: enough left to recognise one's own data, not enough to identify."""
    return _string_mask(category)(value)


def _mask_last4(value: str) -> str:
    return mask_digits(value, 4)


def _mask_secret(value: str) -> str:
    return _stars(8)


@lru_cache(maxsize=1024)
def _string_mask(category: str) -> Callable[[str], str]:
    """The mask a category takes (decided once per category: taxonomy lookups are slow)."""
    if is_within(category, "user.contact.email"):
        return mask_email
    if is_within(category, "user.financial") or is_within(category, "user.contact.phone_number"):
        return _mask_last4
    if is_within(category, "user.government_id"):
        return _mask_last4
    if is_within(category, "user.authorization"):
        return _mask_secret
    if is_within(category, "user.device.ip_address"):
        return mask_ip
    return mask_generic


def mask_ip(value: str) -> str:
    """Keep the first octet (v4) or group (v6): enough to tell networks apart, not hosts."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return mask_generic(value)
    if ip.version == 4:
        return f"{str(ip).split('.')[0]}.*.*.*"
    return f"{ip.exploded.split(':')[0]}:*"


_TYPE_PLACEHOLDER: Final[dict[str, Any]] = {
    "integer": 0,
    "number": 0,
    "boolean": False,
    "object": {},
    "array": [],
    "null": None,
}


def _placeholder(value: Any, types: tuple[str, ...] | None) -> Any:
    """A value of the type the schema expects, for a non-string that must not survive."""
    if types and "string" not in types:
        for t in types:
            if t in _TYPE_PLACEHOLDER:
                ph = _TYPE_PLACEHOLDER[t]
                return ph.copy() if isinstance(ph, (dict, list)) else ph
    return None


def redact_value(value: Any, category: str, types: tuple[str, ...] | None = None) -> Any:
    if types and "string" not in types:
        return _placeholder(value, types)
    return redact_token(category)


def mask_value(value: Any, category: str, types: tuple[str, ...] | None = None) -> Any:
    if isinstance(value, str):
        return mask_string(value, category)
    if isinstance(value, bool) or value is None:
        return _placeholder(value, types) if types else redact_token(category)
    if isinstance(value, (int, float)):
        masked = mask_digits(str(int(value)), 0)
        if types and "string" not in types:
            return 0
        return masked
    return redact_value(value, category, types)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Hasher:
    """Keyed pseudonyms: ``hmac:<kid>:<b64url(HMAC-SHA-256)>``, a derived key per sink.

    Unkeyed hashing is never offered: a plain SHA of an email is reversible by lookup.
    Per-sink keys stop pseudonyms in logs being joined with those sent to third parties.
    """

    __slots__ = ("_keys", "_root", "key_id")

    MIN_KEY_BYTES: Final = 16
    #: As ``hash.key_id``: the id is part of every pseudonym, and registry subjects
    #: (``hmac:<kid>.registry:...``) must parse, or every signed-in request would fail.
    KEY_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

    def __init__(self, key: bytes | str, key_id: str = "k1") -> None:
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < self.MIN_KEY_BYTES:
            raise KeyMissingError(
                f"hash key is too short ({len(raw)} bytes); use at least {self.MIN_KEY_BYTES}"
            )
        if not self.KEY_ID_RE.fullmatch(key_id):
            raise ConfigError("a hash key id is 1 to 32 letters, digits, '_' or '-'")
        self.key_id = key_id
        self._root = KeyedSha256(raw)
        self._keys: dict[str, KeyedSha256] = {}

    @classmethod
    def from_env(
        cls, env_var: str = "PIIMW_HASH_KEY", key_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Hasher:
        env = os.environ if environ is None else environ
        key = env.get(env_var)
        if not key:
            raise KeyMissingError(
                f"action 'hash' needs a secret key: set the environment variable {env_var}",
                source="environment",
            )
        kid = env.get(env_var + "_ID")
        if not key_id and kid:  # empty counts as unset (as for the audit key's _ID)
            if not cls.KEY_ID_RE.fullmatch(kid):
                raise ConfigError(f"the environment variable {env_var}_ID must hold a hash "
                                  "key id: 1 to 32 letters, digits, '_' or '-'",
                                  source="environment")
            return cls(key, kid)
        return cls(key, key_id or "k1")

    def _key(self, sink: str) -> KeyedSha256:
        k = self._keys.get(sink)
        if k is None:
            k = self._keys[sink] = KeyedSha256(
                self._root.digest(b"piimw/v1/sink/" + sink.encode()))
        return k

    def pseudonym(self, value: Any, sink: str) -> str:
        # surrogatepass: a lone surrogate (JSON the standard library read) hashes instead of
        # raising; every other string hashes as before.
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) \
            else json_bytes(value)
        return f"hmac:{self.key_id}.{sink}:{_b64(self._key(sink).digest(data))}"


def json_bytes(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8, also where orjson refuses it: a document the
    standard library read (lone surrogates, integers beyond 64 bits) is written by the
    standard library, its surrogates passed through."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass")


def apply(
    action: str,
    value: Any,
    category: str,
    *,
    sink: str,
    hasher: Hasher | None,
    types: tuple[str, ...] | None = None,
) -> Any:
    """Return the transformed value, or :data:`DROP`. ``reject`` is handled by the caller."""
    if action == "allow":
        return value
    if action == "redact":
        return redact_value(value, category, types)
    if action == "mask":
        return mask_value(value, category, types)
    if action == "hash":
        if hasher is None:
            raise KeyMissingError("action 'hash' is configured but no hash key is loaded")
        if types and "string" not in types:
            return _placeholder(value, types)
        return hasher.pseudonym(value, sink)
    if action == "drop":
        return DROP
    raise ValueError(f"unknown action {action!r}")
