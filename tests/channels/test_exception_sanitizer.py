"""The error channel's core: ``sanitize_exception`` over whole exception graphs, frame locals."""

from __future__ import annotations

import pickle
import traceback
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pii_canary import HAS_GROUPS, Canary, HookedAccount, add_note, exception_group

from piimw.exchange import activate
from piimw.sanitize import (
    PLACEHOLDER,
    ScrubbedException,
    ScrubbedProxy,
    ScrubContext,
    format_exception,
    on_app_exception,
    sanitize_exception,
    scrub_data,
    scrubbed_locals,
)


def rendered(exc: BaseException) -> list[str]:
    """Everything a reporter prints of an exception."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


class WithDetail(Exception):
    """``__str__`` reads an attribute, as Starlette's HTTPException and DRF's errors do."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"


class Slotted(Exception):
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def __str__(self) -> str:
        return f"bad value {self.value}"


class Opaque(Exception):
    """``__str__`` reads state piimw cannot reach (like a C driver's diagnostics)."""

    def __init__(self, secret: str) -> None:
        super().__init__("opaque")
        self._get = lambda: secret

    def __str__(self) -> str:
        return f"server said {self._get()}"


def test_plain_message_in_place(canary: Canary) -> None:
    with activate(canary.exchange()):
        e = raised(ValueError(f"card {canary.card} declined for {canary.email}"))
        out = sanitize_exception(e)
    assert out is e
    assert type(e) is ValueError
    assert str(e) == "card [REDACTED:card] declined for [REDACTED:email]"
    canary.assert_clean(rendered(e))


def test_negative_control_unsanitized_exception_leaks(canary: Canary) -> None:
    e = raised(ValueError(f"card {canary.card} declined for {canary.email}"))
    assert {"card", "email"} <= set(canary.leaks(rendered(e)))


def test_db_error_detail_line(canary: Canary) -> None:
    class UniqueViolation(Exception):
        pass

    e = raised(UniqueViolation(
        'duplicate key value violates unique constraint "users_email_key"\n'
        f"DETAIL:  Key (email)=({canary.email}) already exists.\n"))
    with activate(canary.exchange()):
        sanitize_exception(e)
    assert "Key (email)=([REDACTED:email]) already exists" in str(e)
    canary.assert_clean(rendered(e))


def test_jsonschema_validation_error_str_shows_instance(canary: Canary) -> None:
    schema = {"type": "object", "properties": {"user": {"type": "object", "properties": {
        "age": {"type": "integer"}}, "required": ["age"]}}}
    doc = {"user": {"email": canary.email, "name": canary.name, "phone": canary.phone}}
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as err:
        e = err
    assert {"email", "name", "phone"} <= set(canary.leaks(str(e)))  # control
    with activate(canary.exchange()):
        sanitize_exception(e)
    assert "'age' is a required property" in str(e)
    canary.assert_clean(rendered(e))
    canary.assert_clean(repr(e.instance))
    assert doc["user"]["email"] == canary.email  # the app's document is never modified


def test_django_validation_error(canary: Canary) -> None:
    from django.core.exceptions import ValidationError

    e = ValidationError("%(value)s is taken", params={"value": canary.email})
    listed = ValidationError([ValidationError(f"bad {canary.name}"), "fine"])
    by_field = ValidationError({"email": [f"{canary.email} is invalid"]})
    with activate(canary.exchange()):
        for err in (e, listed, by_field):
            sanitize_exception(raised(err))
            canary.assert_clean(rendered(err))
            canary.assert_clean(str(list(err)))
    assert "is taken" in str(e)


def test_detail_attribute_and_slots(canary: Canary) -> None:
    with activate(canary.exchange()):
        d = sanitize_exception(raised(WithDetail(400, {"email": canary.email})))
        s = sanitize_exception(raised(Slotted(canary.name)))
    assert str(d) == "400: {'email': '[REDACTED:email]'}"
    assert str(s) == "bad value [REDACTED:name]"
    canary.assert_clean(rendered(d) + rendered(s))


def test_starlette_http_exception_detail(canary: Canary) -> None:
    from starlette.exceptions import HTTPException

    e = raised(HTTPException(409, detail=f"{canary.email} already registered"))
    with activate(canary.exchange()):
        sanitize_exception(e)
    canary.assert_clean(rendered(e))
    assert "already registered" in str(e)


def test_unreachable_state_is_pinned_and_class_kept(canary: Canary) -> None:
    e = raised(Opaque(canary.token))
    assert canary.token in str(e)
    with activate(canary.exchange()):
        out = sanitize_exception(e)
    assert out is e
    assert isinstance(e, Opaque)
    assert type(e).__name__ == "Opaque"
    assert type(e).__qualname__ == Opaque.__qualname__
    assert str(e) == "server said [REDACTED:secret]"
    canary.assert_clean(rendered(e))
    assert "Opaque: server said [REDACTED:secret]" in rendered(e)[2]
    clone = pickle.loads(pickle.dumps(e))  # a pinned exception still pickles (as a stand-in)
    assert isinstance(clone, ScrubbedException)
    canary.assert_clean(str(clone))


def test_builtin_special_fields(canary: Canary) -> None:
    with activate(canary.exchange()):
        errs = [
            raised(KeyError(canary.email)),
            raised(FileNotFoundError(2, "No such file", f"/home/{canary.name}/x.txt")),
            raised(UnicodeDecodeError("utf-8", canary.email.encode() + b"\xff", 5, 6,
                                      f"bad byte near {canary.name}")),
            SyntaxError("invalid syntax", ("<input>", 1, 3, f"x = {canary.email}", 1, 5)),
        ]
        for e in errs:
            out = sanitize_exception(e)
            canary.assert_clean(rendered(out), type(e).__name__)
    assert "No such file" in str(errs[1])


def test_chains_from_none_context_and_cycles(canary: Canary) -> None:
    try:
        try:
            raise KeyError(canary.token)
        except KeyError:
            raise RuntimeError(f"lookup failed for {canary.name}") from None
    except RuntimeError as e:
        hidden = e
    assert hidden.__context__ is not None
    assert hidden.__suppress_context__
    a = ValueError(f"a {canary.email}")
    b = TypeError(f"b {canary.phone}")
    a.__context__ = b
    b.__context__ = a  # a cycle: must terminate
    c = raised(LookupError(canary.card))
    c.__cause__ = a
    with activate(canary.exchange()):
        sanitize_exception(hidden)
        sanitize_exception(c)
    # the suppressed context is sanitized too: reporters that walk __context__ see it
    canary.assert_clean([*rendered(hidden), str(hidden.__context__)])
    canary.assert_clean([*rendered(c), str(a), str(b)])


@pytest.mark.skipif(not HAS_GROUPS, reason="exception groups: Python 3.11+")
def test_exception_group_nested_with_notes(canary: Canary) -> None:
    inner = exception_group(f"inner {canary.name}", [ValueError(canary.card)])
    add_note(inner, f"note {canary.phone}")
    outer = exception_group(f"outer {canary.email}", [inner, KeyError(canary.token)])
    add_note(outer, f"retry for {canary.email}")
    e = raised(outer)
    assert set(canary.leaks(rendered(e))) >= {"name", "card", "phone", "email", "token"}
    with activate(canary.exchange()):
        out = sanitize_exception(e)
    assert out is e
    assert type(e).__name__ == "ExceptionGroup"
    assert e.exceptions[0] is inner  # type: ignore[attr-defined]
    canary.assert_clean(rendered(e))
    assert "(2 sub-exceptions)" in str(e)
    assert "retry for [REDACTED:email]" in rendered(e)[2]


def test_copy_mode_leaves_the_original_alone(canary: Canary) -> None:
    cause = raised(ValueError(canary.email))
    try:
        raise RuntimeError(f"for {canary.name}") from cause
    except RuntimeError as err:
        e = err
    add_note(e, canary.phone)
    with activate(canary.exchange()):
        c = sanitize_exception(e, copy=True)
    assert c is not e
    assert type(c) is RuntimeError
    assert c.__cause__ is not cause
    assert isinstance(c.__cause__, ValueError)
    assert c.__traceback__ is e.__traceback__
    canary.assert_clean(rendered(c))
    assert canary.name in str(e)
    assert canary.email in str(cause)
    assert canary.phone in e.__notes__


def test_copy_of_an_exception_with_a_strict_constructor(canary: Canary) -> None:
    class Strict(Exception):
        def __init__(self, a: str, *, b: int) -> None:
            super().__init__(a)
            self.b = b

    e = raised(Strict(canary.email, b=3))
    with activate(canary.exchange()):
        c = sanitize_exception(e, copy=True)
    assert type(c) is Strict
    assert c.b == 3
    canary.assert_clean(rendered(c))


def test_format_exception_helper(canary: Canary) -> None:
    with activate(canary.exchange()):
        text = format_exception(raised(ValueError(canary.email)))
    assert "ValueError: [REDACTED:email]" in text
    canary.assert_clean(text)


def test_scrubbed_locals_per_frame(canary: Canary) -> None:
    def handler(payload: dict[str, Any], name: str) -> None:
        email = payload["email"]  # noqa: F841 - a local a reporter would show
        big = "x" * 5000 + name  # noqa: F841 - longer than max_length
        raise ValueError("boom")

    try:
        handler(canary.payload(), canary.name)
    except ValueError as err:
        e = err
    with activate(canary.exchange()):
        frames = scrubbed_locals(e.__traceback__, max_length=200)
    last = frames[-1]
    assert last.function == "handler"
    assert set(last.variables) >= {"payload", "email", "big"}
    assert last.variables["email"] == "'[REDACTED:email]'"
    assert last.variables["big"].endswith("...")
    canary.assert_clean(list(last.variables.values()))


def test_on_app_exception_uses_the_current_exchange(canary: Canary) -> None:
    ex = canary.exchange()
    e = raised(ValueError(f"signup {canary.name}"))
    with activate(ex):
        out = on_app_exception(e)
    assert out is e
    canary.assert_clean(rendered(e))
    assert any(f.sink == "error" and f.category == "user.name" for f in ex.findings)


def test_on_app_exception_fails_closed(canary: Canary, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ScrubContext, exc: BaseException, *, copy: bool = False) -> BaseException:
        raise RuntimeError("boom")

    monkeypatch.setattr(ScrubContext, "exception", broken)
    e = raised(ValueError(canary.email))
    with activate(canary.exchange()):
        out = on_app_exception(e)
    assert isinstance(out, ScrubbedException)
    assert str(out) == PLACEHOLDER
    assert out.original_type == "builtins.ValueError"
    assert out.__traceback__ is e.__traceback__


def test_scrub_data_keeps_shapes(canary: Canary) -> None:
    from collections import deque, namedtuple

    Point = namedtuple("Point", "who n")
    data = {"a": [canary.email, 1], "b": (canary.name, 2), "c": {canary.phone},
            "d": deque([canary.card], maxlen=3), "e": Point(canary.email, 4),
            canary.email: "key", "f": canary.email.encode(), "g": 3.5, "h": None}
    with activate(canary.exchange()):
        out = scrub_data(data)
    assert isinstance(out["b"], tuple)
    assert isinstance(out["c"], set)
    assert isinstance(out["d"], deque)
    assert out["d"].maxlen == 3
    assert isinstance(out["e"], Point)
    assert out["e"].n == 4
    assert isinstance(out["f"], bytes)
    assert out["g"] == 3.5
    assert out["h"] is None
    canary.assert_clean(repr(out))
    assert data["a"][0] == canary.email  # input untouched


def test_self_referencing_data_terminates(canary: Canary) -> None:
    loop: list[Any] = [canary.email]
    loop.append(loop)
    with activate(canary.exchange()):
        out = scrub_data(loop)
    assert out[1] == PLACEHOLDER
    canary.assert_clean(repr(out))


def test_allowed_values_stay_and_nothing_is_pinned(canary: Canary) -> None:
    from piimw.config import Config

    cfg = Config.from_dict({"rules": [{"id": "debug-email", "action": "allow",
                                       "category": "email", "sink": "error"}]})
    e = raised(Opaque(canary.email))
    with activate(canary.exchange(config=cfg)):
        sanitize_exception(e)
    assert type(e) is Opaque
    assert canary.email in str(e)


_PROPERTY_CANARY = Canary()
_PROPERTY_EXCHANGE = _PROPERTY_CANARY.exchange()


@settings(max_examples=100, deadline=None)
@given(before=st.text(max_size=30), after=st.text(max_size=30),
       which=st.sampled_from(["email", "name", "card", "phone", "ip", "token"]))
def test_property_sanitized_exception_never_shows_the_value(before: str, after: str,
                                                            which: str) -> None:
    value = _PROPERTY_CANARY.values[which]
    text = f"{before}{value}{after}"
    e = raised(RuntimeError(text))
    e.__cause__ = WithDetail(500, {"detail": text})
    add_note(e, text)
    with activate(_PROPERTY_EXCHANGE):
        out = sanitize_exception(e)
    assert all(value not in part for part in [*rendered(out), str(out.__cause__)])


def test_copy_of_an_exception_with_its_own_new(canary: Canary) -> None:
    class Odd(Exception):
        def __new__(cls, code: int, *, text: str) -> Odd:
            self = super().__new__(cls, f"{code}: {text}")
            return self

        def __init__(self, code: int, *, text: str) -> None:
            super().__init__(f"{code}: {text}")

    e = raised(Odd(7, text=canary.email))
    with activate(canary.exchange()):
        c = sanitize_exception(e, copy=True)
    assert type(c) is Odd
    assert str(c) == "7: [REDACTED:email]"
    assert canary.email in str(e)


# -- mapping keys, multi-value dicts, proxies -------------------------------------------------
def test_scrub_data_checks_keys_that_are_not_strings(canary: Canary) -> None:
    attempts = {(canary.email, "login"): 3, 7: "clean", (1, "ok"): "clean"}
    by_card = {int(canary.card): "declined"}
    with activate(canary.exchange()):
        out_attempts, out_cards = scrub_data(attempts), scrub_data(by_card)
    canary.assert_clean([repr(out_attempts), repr(out_cards)])
    assert out_attempts[7] == "clean"  # keys that need nothing keep their type
    assert out_attempts[(1, "ok")] == "clean"
    assert list(out_cards.values()) == ["declined"]
    assert all(isinstance(k, str) for k in out_cards)


def _multi_value_dicts(c: Canary) -> list[Any]:
    """Each hides a value that its ``items()`` does not yield but its repr shows."""
    from django.utils.datastructures import MultiValueDict
    from starlette.datastructures import ImmutableMultiDict, QueryParams
    from werkzeug.datastructures import MultiDict

    return [
        MultiValueDict({"email": [c.email, "x"], "card": [c.card, "x"]}),  # items(): last
        MultiDict([("email", "x"), ("email", c.email), ("card", "x"), ("card", c.card)]),
        QueryParams([("email", c.email), ("email", "x"), ("card", c.card), ("card", "x")]),
        ImmutableMultiDict([("email", c.email), ("email", "x")]),
    ]


def test_scrub_data_checks_every_value_of_multi_value_dicts(canary: Canary) -> None:
    with activate(canary.exchange()):
        for mdict in _multi_value_dicts(canary):
            assert canary.leaks(repr(mdict))  # the hidden value is in the rendering
            out = scrub_data(mdict)
            assert type(out) is dict, type(mdict)
            assert "x" in out["email"]
            canary.assert_clean([repr(out), str(out)], type(mdict).__name__)


def test_clean_multi_value_dicts_are_kept(canary: Canary) -> None:
    from werkzeug.datastructures import MultiDict

    mdict = MultiDict([("plan", "pro"), ("plan", "team")])
    with activate(canary.exchange()):
        assert scrub_data(mdict) is mdict


def test_scrub_data_checks_the_renderings_of_other_mappings(canary: Canary) -> None:
    from collections.abc import Iterator, Mapping

    class Hidden(Mapping[str, str]):
        """``items()`` yields nothing to scrub; the repr shows a stored value."""

        def __getitem__(self, key: str) -> str:
            return "x"

        def __iter__(self) -> Iterator[str]:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

        def __repr__(self) -> str:
            return f"Hidden(a='x', secret={canary.email!r})"

    with activate(canary.exchange()):
        out = scrub_data(Hidden())
    canary.assert_clean([repr(out), str(out)])


class _User:
    def __init__(self, email: str) -> None:
        self.email = email

    def __repr__(self) -> str:
        return f"<User {self.email}>"

    def __structlog__(self) -> dict[str, str]:
        return {"email": self.email}

    def __html__(self) -> str:
        return f"<b>{self.email}</b>"


def test_scrubbed_proxy_forwards_plain_attributes_only(canary: Canary) -> None:
    with activate(canary.exchange()):
        proxy = scrub_data(_User(canary.email))
    assert isinstance(proxy, ScrubbedProxy)
    assert proxy.email == canary.email  # code that reads the object keeps working
    for hook in ("__structlog__", "__html__", "__dict__", "_repr_html_"):
        assert not hasattr(proxy, hook), hook
    with pytest.raises(TypeError):
        vars(proxy)
    canary.assert_clean([repr(proxy), str(proxy), f"{proxy}"])


def test_scrub_data_wraps_an_object_whose_structlog_hook_shows_pii(canary: Canary) -> None:
    clean = HookedAccount("nobody")
    with activate(canary.exchange()):
        out = scrub_data(HookedAccount(canary.email))
        assert scrub_data(clean) is clean
    assert isinstance(out, ScrubbedProxy)
    assert repr(out) == "<Account 42>"
    assert not hasattr(out, "__structlog__")
