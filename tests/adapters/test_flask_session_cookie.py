"""The Flask adapter opens the session only when the Cookie header can hold it.

``_may_name_cookie`` rules out, without Werkzeug's parser, headers in which that parser
cannot find the session cookie. It may say "maybe" wrongly (the parser then decides); it must
never say "no" to a header the parser reads the cookie from: that would ignore an opt-out.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, session
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.sansio.http import parse_cookie

import piimw
from piimw.contrib.flask import PIIMW, _may_name_cookie

# Cookie headers built from the characters the parser treats specially, around the name.
pieces = st.sampled_from(["session", "sessionid", "my_session", "session2", "x", "=", ";",
                          " ", "\t", '"', "\\", "a=b", "1YYN", ",",
                          # whitespace Werkzeug 2.3 strips from keys (3.x does not)
                          "\n", "\r", "\x0b", "\x0c", "\xa0", "\x85", "\x1c", "\x00"])
headers = st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=2000, deadline=None)
@given(headers)
@example("session=abc")
@example(" session =abc")
@example("a=b;session")
@example('x="a;b"; session=c')
@example("sessionid=abc; csrftoken=x")
@example("\nsession=abc")  # Werkzeug 2.3 finds it (found by review: the check said no)
@example("a=b;\xa0session")
@example("=session\n=x")  # Werkzeug 2.3 starts a key after a "=" it cannot read past
def test_never_no_where_werkzeug_finds_the_cookie(header: str) -> None:
    if "session" in parse_cookie(header):
        assert _may_name_cookie(header, "session")


def test_werkzeug_2_3_keys_are_covered() -> None:
    """Cookie keys Werkzeug 2.3's parser finds and 3.x's does not; pyproject allows both."""
    for header in ("\nsession=abc", "a=b;\xa0session", "\x85session=1", "=session\n=x"):
        assert _may_name_cookie(header, "session"), repr(header)


def test_other_cookies_containing_the_name_are_ruled_out() -> None:
    assert not _may_name_cookie("sessionid=abc; csrftoken=x; my_session=1", "session")
    assert _may_name_cookie("sessionid=abc; session=x", "session")


def _app() -> Flask:
    """Requests are buffered (``buffered=True``): the response is closed at once, as servers
    close it, and that is when piimw leaves the request's context."""
    app = Flask(__name__)
    app.secret_key = "test-only"  # signs the session of this test only

    @app.post("/opt-out")
    def opt_out() -> Any:
        session["piimw_opt_out"] = True
        return "", 204

    @app.get("/consent")
    def consent() -> Any:
        exchange = piimw.current()
        assert exchange is not None
        return {"default": exchange.consent.is_default}

    PIIMW(app, {})
    return app


def test_the_session_is_read_among_other_cookies() -> None:
    client = _app().test_client()
    assert client.get("/consent", buffered=True).get_json() == {"default": True}
    assert client.post("/opt-out", buffered=True).status_code == 204
    client.set_cookie("sessionid", "q8w7e6r5t4y3u2i1o0p9")  # Django-style, not Flask's
    client.set_cookie("csrftoken", "Zx81Kq0Lw2Pn3Rt4Yv5")
    assert client.get("/consent", buffered=True).get_json() == {"default": False}


def test_cookies_without_the_session_leave_consent_alone() -> None:
    client = _app().test_client()
    client.set_cookie("sessionid", "q8w7e6r5t4y3u2i1o0p9")
    assert client.get("/consent", buffered=True).get_json() == {"default": True}
