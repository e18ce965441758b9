"""multipart/form-data: piimw must read a part's field name as the app's parser will.

Found by review: piimw split ``Content-Disposition`` on ``;`` without honouring quotes, took the
first of two such headers and ignored RFC 2231 ``name*=``; Werkzeug (Flask) and Django read
those parts as the tagged field, and the app got the raw card number. A part or a boundary
that parsers could read in more than one way is now refused with a 400 problem.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("flask")
pytest.importorskip("django")

import flask
from adapters import django_settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

import piimw
from piimw.contrib.django import PIIMiddleware
from piimw.contrib.flask import PIIMW

django_settings.setup()

CARD = "4242424242424242"
SIGNUP = {"type": "object", "properties": {
    "card": {"type": "string", "x-pii": {"category": "card", "action": "redact"}},
    "note": {"type": "string"}}}
OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {"/signup": {"post": {
        "requestBody": {"content": {"multipart/form-data": {"schema": SIGNUP}}},
        "responses": {"200": {"description": "ok"}}}}},
}


def _part(head: str, value: str) -> bytes:
    return b"--B\r\n" + head.encode() + b"\r\n\r\n" + value.encode() + b"\r\n"


def _body(*parts: bytes, boundary: bytes = b"B") -> bytes:
    return b"".join(parts).replace(b"--B", b"--" + boundary) + b"--" + boundary + b"--\r\n"


DISPOSITION = "Content-Disposition: form-data"
READ_AS_CARD = {
    "plain": _body(_part(f'{DISPOSITION}; name="card"', CARD)),
    "a quoted ';' hiding a filename": _body(
        _part(f'{DISPOSITION}; name="card"; x="; filename=a"', CARD)),
    "RFC 2231 name*": _body(_part(f"{DISPOSITION}; name*=UTF-8''card", CARD)),
    "RFC 2231 continuations": _body(_part(f"{DISPOSITION}; name*0=ca; name*1=rd", CARD)),
    # Django reads a part with an empty filename (an empty file input) as a field
    "an empty filename": _body(_part(f'{DISPOSITION}; name="card"; filename=""', CARD)),
    "an empty filename beside another": _body(
        _part(f'{DISPOSITION}; name="card"; filename="a"; filename=""', CARD)),
    # what Java's HttpClient (MultipartEntityBuilder, strict mode) sends for a text field,
    # and Python's email package for an ASCII one: every parser reads ASCII alike
    "a field in ISO-8859-1 marked 8bit": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n'
        "Content-Transfer-Encoding: 8bit", CARD)),
    "an ASCII field labelled ISO-8859-1": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Type: text/plain; charset=ISO-8859-1', CARD)),
    "a field in us-ascii marked 7bit": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Type: text/plain; charset="us-ascii"\r\n'
        "Content-Transfer-Encoding: 7bit", CARD)),
    # Werkzeug's test client writes an empty value without its line break (Flask reads "",
    # Django drops the part); it was refused (found by review)
    "beside an empty value without its line break": _body(
        b"--B\r\n" + f'{DISPOSITION}; name="note"'.encode() + b"\r\n\r\n",
        _part(f'{DISPOSITION}; name="card"', CARD)),
    # what .NET's MultipartFormDataContent sends for a file, here beside a field
    "beside a file part with filename and filename*": _body(
        _part(f'{DISPOSITION}; name=file; filename=a.txt; filename*=utf-8\'\'a.txt', "hi"),
        _part(f'{DISPOSITION}; name="card"', CARD)),
}
AMBIGUOUS = {
    "two Content-Disposition headers": _body(
        _part(f'{DISPOSITION}; name="note"\r\n{DISPOSITION}; name="card"', CARD)),
    "name given twice": _body(_part(f'{DISPOSITION}; name="note"; name="card"', CARD)),
    "name and name*": _body(_part(f"{DISPOSITION}; name=\"note\"; name*=UTF-8''card", CARD)),
    # Found by a black-box run under gunicorn: Werkzeug unfolds a folded header and splits
    # header lines on a bare CR or LF; Django strips a name and decodes base64 fields.
    "a folded Content-Disposition": _body(_part(f'{DISPOSITION};\r\n name="card"', CARD)),
    "header lines split by a bare LF": _body(_part(f'X-A: b\n{DISPOSITION}; name="card"', CARD)),
    "header lines split by a bare CR": _body(_part(f'X-A: b\r{DISPOSITION}; name="card"', CARD)),
    "a name with whitespace around it": _body(_part(f'{DISPOSITION}; name=" card"', CARD)),
    # Werkzeug reads "c\\ard" as "card", the others as written
    "a backslash in the name": _body(_part(f'{DISPOSITION}; name="c\\ard"', CARD)),
    # Werkzeug skips what follows a value up to the next ';', joins continuations in the
    # order given and leaves an RFC 2231 value in a charset it does not know as written
    "text after a quoted name": _body(_part(f'{DISPOSITION}; name="card" x', CARD)),
    "text after a token name": _body(_part(f"{DISPOSITION}; name=card(x", CARD)),
    "continuations out of order": _body(_part(f"{DISPOSITION}; name*1=ca; name*0=rd", CARD)),
    "an RFC 2231 charset Werkzeug does not decode": _body(
        _part(f"{DISPOSITION}; name*=utf-16''card", CARD)),
    "a base64 field": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Transfer-Encoding: base64',
        base64.b64encode(CARD.encode()).decode())),
    "a field in latin-1": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Type: text/plain; charset=iso-8859-1',
        f"{CARD} café")),
    # Found by review: a Content-Transfer-Encoding after the Content-Type undid its check
    "a field in latin-1 marked 8bit": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n'
        "Content-Transfer-Encoding: 8bit", f"{CARD} café")),
    "a base64 field marked as text": _body(_part(
        f'{DISPOSITION}; name="card"\r\nContent-Transfer-Encoding: base64\r\n'
        "Content-Type: text/plain", base64.b64encode(CARD.encode()).decode())),
    # Found by review: the email package counts the quote of "a\\" as escaped and reads
    # on into the next parameter; Werkzeug ends the value there and finds the name
    "an escaped backslash before a closing quote": _body(
        _part(f'{DISPOSITION}; x="a\\\\"; name="card"', CARD)),
    "an escaped backslash before the closing quote of the name": _body(
        _part(f'{DISPOSITION}; name="note"; x="\\\\"; name="card"', CARD)),
    # the email package raised (a 500); a client's malformed header is its 400
    "name*= beside name*0=": _body(_part(f"{DISPOSITION}; name*=utf-8''ca; name*0=rd", CARD)),
}


@pytest.fixture
def config(tmp_path: Path) -> piimw.Config:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))
    return piimw.Config.from_dict({"openapi": [str(spec)]})


def _flask(config: piimw.Config, body: bytes, content_type: str) -> tuple[int, list[Any]]:
    app = flask.Flask(__name__)
    seen: list[Any] = []

    @app.post("/signup")
    def signup() -> dict[str, int]:
        seen.extend(flask.request.form.items(multi=True))
        seen.extend((k, f.read().decode()) for k, f in flask.request.files.items(multi=True))
        return {"id": 1}

    PIIMW(app, config)
    with app.test_client() as client:
        response = client.post("/signup", data=body, headers={"Content-Type": content_type})
        status = response.status_code
        response.close()
    return status, seen


def _django(config: piimw.Config, body: bytes, content_type: str,
            tmp_path: Path) -> tuple[int, list[Any]]:
    spec = tmp_path / "django-openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))
    seen: list[Any] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.extend(request.POST.items())
        seen.extend((k, f.read().decode()) for k, f in request.FILES.items())
        return HttpResponse(b'{"id": 1}', content_type="application/json")

    request = RequestFactory().generic("POST", "/signup", body, content_type=content_type)
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        response = PIIMiddleware(view)(request)
    response.close()
    return response.status_code, seen


def _starlette(config: piimw.Config, body: bytes, content_type: str) -> tuple[int, list[Any]]:
    """Starlette's ``request.form()`` (python-multipart) behind the Starlette adapter."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from piimw.contrib.starlette import PIIMiddleware as StarletteMiddleware

    seen: list[Any] = []

    async def signup(request: Request) -> JSONResponse:
        async with request.form() as form:
            for k, v in form.multi_items():
                seen.append((k, (await v.read()).decode() if isinstance(v, UploadFile) else v))
        return JSONResponse({"id": 1})

    app = Starlette(routes=[Route("/signup", signup, methods=["POST"])],
                    middleware=[Middleware(StarletteMiddleware, config=config)])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/signup", content=body, headers={"Content-Type": content_type})
    return response.status_code, seen


FRAMEWORKS = ["flask", "django", "starlette"]


def _send(framework: str, config: piimw.Config, body: bytes, tmp_path: Path,
          content_type: str = "multipart/form-data; boundary=B") -> tuple[int, list[Any]]:
    if framework == "flask":
        return _flask(config, body, content_type)
    if framework == "starlette":
        return _starlette(config, body, content_type)
    return _django(config, body, content_type, tmp_path)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", list(READ_AS_CARD))
def test_a_field_the_app_reads_as_card_is_redacted(framework: str, case: str,
                                                   config: piimw.Config, tmp_path: Path) -> None:
    status, seen = _send(framework, config, READ_AS_CARD[case], tmp_path)
    if framework == "starlette" and case.startswith("RFC 2231"):
        # python-multipart reads no RFC 2231 name: Starlette refuses the part itself.
        assert (status, seen) == (400, [])
        return
    assert status == 200
    assert ("card", "[REDACTED:card]") in seen
    assert not any(CARD in str(v) for _, v in seen)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_a_part_parsers_may_read_differently_is_refused(framework: str, case: str,
                                                        config: piimw.Config,
                                                        tmp_path: Path) -> None:
    status, seen = _send(framework, config, AMBIGUOUS[case], tmp_path)
    assert status == 400
    assert seen == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_boundary_given_twice_is_refused(framework: str, config: piimw.Config,
                                           tmp_path: Path) -> None:
    """Django (and Starlette) take the last ``boundary``; piimw took the first, so a body with
    parts under both inspected one set and handed the app the other."""
    inspected = _part(f'{DISPOSITION}; name="note"', "hello")
    hidden = _part(f'{DISPOSITION}; name="card"', CARD).replace(b"--B", b"--C")
    body = inspected + hidden + b"--C--\r\n--B--\r\n"
    status, seen = _send(framework, config, body, tmp_path,
                         "multipart/form-data; boundary=B; boundary=C")
    assert status == 400
    assert seen == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_text_after_the_boundary_is_refused(framework: str, config: piimw.Config,
                                            tmp_path: Path) -> None:
    """Werkzeug reads ``boundary=B x`` as ``B``, piimw as ``B x``: a part under ``B`` hid in
    the one field piimw saw under ``B x``, and Flask handed the app the card."""
    hidden = _part(f'{DISPOSITION}; name="card"', CARD) + b"--B--\r\n"
    body = (b"--B x\r\n" + f'{DISPOSITION}; name="note"'.encode() + b"\r\n\r\nhello\r\n"
            + hidden + b"\r\n--B x--\r\n")
    status, seen = _send(framework, config, body, tmp_path, "multipart/form-data; boundary=B x")
    assert status == 400
    assert seen == []


def test_a_form_from_flasks_test_client_passes(config: piimw.Config) -> None:
    """Flask's test client posting a file beside an empty text field: refused with a 400
    (its empty value has no line break before the next boundary; found by review)."""
    app = flask.Flask(__name__)
    seen: list[Any] = []

    @app.post("/signup")
    def signup() -> dict[str, int]:
        seen.extend(flask.request.form.items(multi=True))
        seen.extend((k, f.filename) for k, f in flask.request.files.items(multi=True))
        return {"id": 1}

    PIIMW(app, config)
    with app.test_client() as client:
        response = client.post("/signup", data={
            "note": "", "card": CARD, "file": (io.BytesIO(b"\x89PNG\x00"), "naïve.png")})
        status = response.status_code
        response.close()
    assert status == 200
    assert seen == [("note", ""), ("card", "[REDACTED:card]"), ("file", "naïve.png")]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("boundary", ["B%22x", "B\\x"])
def test_a_boundary_werkzeug_unescapes_is_refused(framework: str, boundary: str,
                                                  config: piimw.Config, tmp_path: Path) -> None:
    """Werkzeug reads ``%22`` in a quoted boundary as ``"`` and drops a backslash before any
    character; piimw (and Django) kept them: the parts Flask found under ``B"x`` were one
    untagged field to piimw, and the tagged one reached the app (found by review)."""
    werkzeug = boundary.replace("%22", '"').replace("\\", "")
    hidden = _part(f'{DISPOSITION}; name="card"', CARD).replace(b"--B", f"--{werkzeug}".encode())
    body = (f"--{boundary}\r\n{DISPOSITION}; name=\"note\"\r\n\r\nhello\r\n".encode() + hidden
            + f"--{werkzeug}--\r\n\r\n--{boundary}--\r\n".encode())
    status, seen = _send(framework, config, body, tmp_path,
                         f'multipart/form-data; boundary="{boundary}"')
    assert status == 400
    assert seen == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("charset", ["utf-16", "utf-8; charset=utf-16", "latin-1"])
def test_a_body_in_another_charset_is_refused(framework: str, charset: str,
                                              config: piimw.Config, tmp_path: Path) -> None:
    """Django (and Starlette) read field names and values in the body's charset: in UTF-16,
    bytes that name no field for piimw named the tagged one, and the app got the card."""
    head = f'{DISPOSITION}; name="'.encode() + "card".encode("utf-16-le") + b'"'
    body = b"--B\r\n" + head + b"\r\n\r\n" + CARD.encode("utf-16-le") + b"\r\n--B--\r\n"
    status, seen = _send(framework, config, body, tmp_path,
                         f"multipart/form-data; boundary=B; charset={charset}")
    assert status == 400
    assert seen == []


@pytest.mark.parametrize("media", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_an_operation_declaring_only_form_bodies_has_a_plan(media: str, tmp_path: Path) -> None:
    """Its schema was read from JSON media types only, so its tagged fields went unprotected
    (found while testing the fix above)."""
    spec = tmp_path / "form-openapi.json"
    doc = orjson.loads(orjson.dumps(OPENAPI))
    doc["paths"]["/signup"]["post"]["requestBody"]["content"] = {media: {"schema": SIGNUP}}
    spec.write_bytes(orjson.dumps(doc))
    config = piimw.Config.from_dict({"openapi": [str(spec)]})
    route = config.routes.lookup("POST", None, "/signup")
    assert route is not None
    assert route.request is not None
    form = b"card=" + CARD.encode() + b"&note=hi"
    status, seen = _flask(config, form, "application/x-www-form-urlencoded")
    assert status == 200
    assert ("card", "[REDACTED:card]") in seen
    assert ("note", "hi") in seen
