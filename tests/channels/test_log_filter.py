"""The log channel: ``PIIFilter`` on handlers, ``install()``, access logs, fail-closed."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pii_canary import HAS_GROUPS, Canary, add_note, exception_group

import piimw.logging as piilog
from piimw.exchange import activate
from piimw.logging import WITHHELD, PIIFilter, install, uninstall
from piimw.sanitize import ScrubContext

FORMAT = "%(levelname)s %(name)s %(message)s"


class IntegrityError(Exception):
    """Shaped like a database driver's error: the server's DETAIL line quotes the value."""


class Capture:
    """A handler formatting to memory, with or without the filter."""

    def __init__(self, name: str, *, filtered: bool = True, fmt: str = FORMAT) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter(fmt))
        if filtered:
            self.handler.addFilter(PIIFilter())
        self.logger = logging.getLogger(name)
        self.logger.handlers = [self.handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    cap = Capture(f"piimw.tests.log.{request.node.name}")
    yield cap
    cap.logger.handlers = []


def _failure_modes(log: logging.Logger, c: Canary) -> None:
    """Every way the issue lists for request PII to reach a log line."""
    payload = c.payload()
    log.info("signup %s", payload)
    log.info("signup %r for %s", payload, c.name)
    log.warning(f"f-string message for {c.email}")
    log.debug("auth header %s", f"Bearer {c.token}")
    log.info("%(email)s signed up from %(ip)s", {"email": c.email, "ip": c.ip})
    try:
        raise ValueError(f"could not charge card {c.card} for {c.name}")
    except ValueError:
        log.exception("payment failed")
    try:
        raise IntegrityError(
            'duplicate key value violates unique constraint "users_email_key"\n'
            f"DETAIL:  Key (email)=({c.email}) already exists.")
    except IntegrityError as e:
        log.error("db error: %s", e, exc_info=True)
    try:
        jsonschema.validate({"email": c.email, "phone": c.phone, "age": "x"},
                            {"type": "object", "properties": {"age": {"type": "integer"}},
                             "additionalProperties": {"type": "integer"}})
    except jsonschema.ValidationError as e:
        log.warning("invalid: %s", e, exc_info=True)
    try:
        try:
            raise KeyError(c.token)
        except KeyError:
            raise RuntimeError(f"lookup failed for {c.name}") from None
    except RuntimeError:
        log.exception("chained from None")
    try:
        try:
            raise LookupError(c.phone)
        except LookupError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        log.exception("chained with cause")
    try:
        try:
            raise OSError(f"disk full writing {c.email}")
        except OSError:
            raise ValueError("during handling")  # noqa: B904 - implicit __context__ on purpose
    except ValueError:
        log.exception("implicit context")
    if HAS_GROUPS:
        group = exception_group(f"batch for {c.name}", [ValueError(c.email), TypeError(c.card)])
        add_note(group, f"note: user {c.phone}")
        try:
            raise group
        except Exception:
            log.exception("group")
    log.info("request done", extra={"payload": payload, "client": c.ip,
                                    "request": _Request(c)})
    log.info("stack", stack_info=True)


class _Request:
    """An object whose repr shows request data, as Django's and Starlette's do."""

    def __init__(self, c: Canary) -> None:
        self.path = f"/signup?email={c.email}"

    def __repr__(self) -> str:
        return f"<Request: POST {self.path!r}>"


# -- the failure modes ----------------------------------------------------------------------
def test_every_failure_mode_is_scrubbed_in_a_request(capture: Capture, canary: Canary) -> None:
    fmt = FORMAT + " %(payload)s %(client)s %(request)s"
    capture.handler.setFormatter(_Lenient(fmt))
    with activate(canary.exchange()):
        _failure_modes(capture.logger, canary)
    out = capture.text
    assert "payment failed" in out
    assert "Traceback" in out
    assert "ExceptionGroup" in out
    assert "[REDACTED:" in out
    # sanitized, not destroyed: the messages around the values survive
    for kept in ("is not of type 'integer'", "OSError: disk full writing [REDACTED:email]",
                 "Key (email)=([REDACTED:email]) already exists", "<Request: POST '/signup?",
                 "could not charge card [REDACTED:card]"):
        assert kept in out
    assert "note: user [REDACTED:phone]" in out or not HAS_GROUPS
    assert "str() failed" not in out
    canary.assert_clean(out, "the formatted log")


def test_negative_control_without_the_filter_everything_leaks(canary: Canary) -> None:
    raw = Capture("piimw.tests.log.unfiltered", filtered=False)
    raw.handler.setFormatter(_Lenient(FORMAT + " %(payload)s %(client)s %(request)s"))
    with activate(canary.exchange()):
        _failure_modes(raw.logger, canary)
    assert set(canary.leaks(raw.text)) == {"email", "name", "card", "phone", "ip", "token"}


class _Lenient(logging.Formatter):
    """Renders the extra fields when present, an empty string otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        for key in ("payload", "client", "request"):
            if not hasattr(record, key):
                setattr(record, key, "")
        return super().format(record)


def test_clean_records_keep_template_and_args(capture: Capture, canary: Canary) -> None:
    seen: list[logging.LogRecord] = []
    capture.handler.addFilter(lambda r: seen.append(r) or True)
    with activate(canary.exchange()):
        capture.logger.info("order %s shipped in %d days", "A-1", 3)
    assert seen[0].msg == "order %s shipped in %d days"
    assert seen[0].args == ("A-1", 3)


def test_dirty_records_are_rendered_once(capture: Capture, canary: Canary) -> None:
    seen: list[logging.LogRecord] = []
    capture.handler.addFilter(lambda r: seen.append(r) or True)
    with activate(canary.exchange()):
        capture.logger.info("signup %s", canary.payload())
    record = seen[0]
    assert record.args == ()
    assert isinstance(record.msg, str)
    assert record.msg.startswith("signup {")
    canary.assert_clean(record.getMessage())


def test_exc_info_is_a_sanitized_copy_and_the_original_untouched(
        capture: Capture, canary: Canary) -> None:
    seen: list[logging.LogRecord] = []
    capture.handler.addFilter(lambda r: seen.append(r) or True)
    original = ValueError(f"bad {canary.email}")
    with activate(canary.exchange()):
        try:
            raise original
        except ValueError:
            capture.logger.exception("failed")
    record = seen[0]
    assert record.exc_info is not None
    copy = record.exc_info[1]
    assert isinstance(copy, ValueError)
    assert copy is not original
    assert copy.__traceback__ is original.__traceback__
    canary.assert_clean(str(copy))
    assert canary.email in str(original)  # the app's exception object is not modified
    # a handler formatting again (its own formatter) sees only the sanitized copy
    canary.assert_clean(logging.Formatter().formatException(record.exc_info))


def test_keep_traceback_false_drops_exc_info_but_keeps_text(canary: Canary) -> None:
    cap = Capture("piimw.tests.log.droptb", filtered=False)
    cap.handler.addFilter(PIIFilter(keep_traceback=False))
    seen: list[logging.LogRecord] = []
    cap.handler.addFilter(lambda r: seen.append(r) or True)
    with activate(canary.exchange()):
        try:
            raise ValueError(canary.name)
        except ValueError:
            cap.logger.exception("x")
    assert seen[0].exc_info is None
    assert "ValueError: [REDACTED:name]" in cap.text


def test_outside_a_request_detectors_alone_apply(capture: Capture, canary: Canary) -> None:
    capture.logger.info("contact %s, name %s", canary.email, canary.name)
    out = capture.text
    assert canary.email not in out
    assert "[REDACTED:email]" in out
    assert canary.name in out  # a name is only known inside the request that brought it


def test_a_record_through_two_filtered_handlers_is_scrubbed_once(canary: Canary) -> None:
    first, second = Capture("piimw.tests.log.twice"), io.StringIO()
    h2 = logging.StreamHandler(second)
    h2.addFilter(PIIFilter())
    first.logger.addHandler(h2)
    calls: list[int] = []
    real = PIIFilter._scrub

    def counting(self: PIIFilter, record: logging.LogRecord, ctx: ScrubContext) -> None:
        calls.append(1)
        real(self, record, ctx)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PIIFilter, "_scrub", counting)
        with activate(canary.exchange()):
            first.logger.info("signup %s", canary.email)
    assert len(calls) == 1
    canary.assert_clean([first.text, second.getvalue()])
    first.logger.handlers = []


@pytest.mark.parametrize("order", ["log first", "error first"])
def test_a_filter_for_another_sink_still_applies_its_rules(order: str) -> None:
    """The record's mark named no sink: a record that passed a ``log`` filter skipped an
    ``error`` filter on the next handler, which then showed what the log rules allow (found
    by review)."""
    import piimw
    from piimw.exchange import Exchange

    email = "jane.doe@example.org"
    config = piimw.Config.from_dict({"rules": [
        {"id": "ops-log-email", "action": "allow", "category": "email", "sink": "log"}]})
    console, errors = io.StringIO(), io.StringIO()
    to_console, to_errors = logging.StreamHandler(console), logging.StreamHandler(errors)
    to_console.addFilter(PIIFilter())
    to_errors.addFilter(PIIFilter(sink="error"))
    log = logging.Logger("piimw.tests.log.sinks")
    log.handlers = [to_console, to_errors] if order == "log first" else [to_errors, to_console]
    with activate(Exchange(config, "POST", "/signup", [])):
        log.error("signup failed for %s", email)
    assert email not in errors.getvalue()
    assert "signup failed for" in errors.getvalue()


def test_extras_named_like_piimw_s_own_mark_are_scrubbed(canary: Canary) -> None:
    """Every extra whose name began with ``_piimw`` was skipped, not only the mark."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(PIIFilter())
    log = logging.Logger("piimw.tests.log.extras")
    log.addHandler(handler)
    with activate(canary.exchange()):
        log.info("saved", extra={"_piimw_note": f"for {canary.email}"})
    assert records[0].__dict__["_piimw_note"] != f"for {canary.email}"
    canary.assert_clean(repr(records[0].__dict__))


def test_scrubbing_failure_withholds_the_record(capture: Capture, canary: Canary,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ScrubContext, text: str) -> str:
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(ScrubContext, "text", broken)
    with activate(canary.exchange()):
        try:
            raise ValueError(canary.email)
        except ValueError:
            capture.logger.exception("signup %s", canary.payload(),
                                     extra={"payload": canary.payload()})
    out = capture.text
    assert WITHHELD in out
    canary.assert_clean(out)


def test_broken_format_arguments_do_not_dump_raw_args(capture: Capture, canary: Canary,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with activate(canary.exchange()):
        capture.logger.info("two %s %s", canary.email)  # missing argument
    err = capsys.readouterr().err
    canary.assert_clean([capture.text, err])
    assert "could not be formatted" in capture.text


# -- access logs ----------------------------------------------------------------------------
def _access_record(name: str, msg: str, args: Any) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_uvicorn_access_log_keeps_its_fields(canary: Canary) -> None:
    from uvicorn.logging import AccessFormatter

    record = _access_record(
        "uvicorn.access", '%s - "%s %s HTTP/%s" %d',
        (f"{canary.ip}:51234", "GET", f"/search?q={canary.name}&email={canary.email}", "1.1",
         200))
    ex = canary.exchange()
    with activate(ex):
        assert PIIFilter().filter(record)
    assert isinstance(record.args, tuple)
    assert len(record.args) == 5
    assert record.args[4] == 200
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s',
                           use_colors=False).format(record)
    assert '"GET /search?q=' in line
    assert "200" in line
    canary.assert_clean(line, "uvicorn access log")


def test_uvicorn_access_log_query_values_known_from_the_exchange(canary: Canary) -> None:
    """The middleware harvests query values: an access line needs no detector to be clean."""
    from piimw.config import Config
    from piimw.exchange import Exchange

    qs = f"ref={canary.name}".encode()
    ex = Exchange(Config(), "GET", "/search", [], qs)
    ex.add_client_address(canary.ip)
    record = _access_record("uvicorn.access", '%s - "%s %s HTTP/%s" %d',
                            (f"{canary.ip}:5000", "GET", f"/search?{qs.decode()}", "1.1", 200))
    with activate(ex):
        PIIFilter().filter(record)
    canary.assert_clean(record.getMessage())


@pytest.mark.parametrize(("query", "value"), [
    ("card=4242+4242+4242+4242&page=2", "4242+4242+4242+4242"),
    ("phone=%2B1%20415%20555%200100", "%2B1%20415%20555%200100"),
])
def test_an_access_line_outside_a_request_reads_query_values_decoded(query: str,
                                                                    value: str) -> None:
    """Separators written as ``+`` or ``%20`` hid a card's or phone number's shape from the
    detectors, which alone scrub an access line written after the request (review)."""
    from uvicorn.logging import AccessFormatter

    record = _access_record("uvicorn.access", '%s - "%s %s HTTP/%s" %d',
                            ("203.0.113.9:5000", "GET", f"/search?{query}", "1.1", 200))
    PIIFilter().filter(record)
    line = AccessFormatter('"%(request_line)s" %(status_code)s', use_colors=False).format(
        record)
    assert value not in line
    assert "[REDACTED:" in line
    assert line.startswith('"GET /search?')


def test_gunicorn_access_log_keeps_safe_atoms(canary: Canary) -> None:
    from gunicorn.glogging import SafeAtoms

    atoms = SafeAtoms({"h": canary.ip, "r": f"GET /x?email={canary.email} HTTP/1.1",
                       "s": "200", "q": f"email={canary.email}", "{user-agent}i": "curl"})
    fmt = '%(h)s "%(r)s" %(s)s %(q)s %({user-agent}i)s %({x-missing}i)s'
    record = _access_record("gunicorn.access", fmt, (atoms,))
    with activate(canary.exchange()):
        PIIFilter().filter(record)
    assert isinstance(record.args, SafeAtoms)
    line = record.getMessage()
    assert line.endswith("curl -")  # SafeAtoms still answers "-" for a missing atom
    canary.assert_clean(line, "gunicorn access log")
    assert canary.email in atoms["q"]  # the caller's dict is not modified


def test_gunicorn_access_log_user_of_basic_credentials() -> None:
    """gunicorn's ``%(u)s`` prints the user name it decodes from ``Authorization: Basic``;
    only the base64 token was known, and the name went to the access log (found by review
    under real gunicorn)."""
    import base64

    from gunicorn.glogging import SafeAtoms

    from piimw.config import Config
    from piimw.exchange import Exchange

    user, password = "zebulon.quackenbush", "s3cret-Pa55word"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    ex = Exchange(Config(), "GET", "/account", [(b"authorization", f"Basic {token}".encode())])
    atoms = SafeAtoms({"h": "203.0.113.9", "u": user, "r": "GET /account HTTP/1.1", "s": "200"})
    record = _access_record("gunicorn.access", '%(h)s - %(u)s "%(r)s" %(s)s', (atoms,))
    with activate(ex):
        PIIFilter().filter(record)
        wrong_password = logging.LogRecord("app", logging.INFO, __file__, 1,
                                           "login failed for %s with %s",
                                           (user, password), None)
        PIIFilter().filter(wrong_password)
    line = record.getMessage()
    assert user not in line
    assert line.endswith('"GET /account HTTP/1.1" 200')
    assert user not in wrong_password.getMessage()
    assert password not in wrong_password.getMessage()


# -- install() ------------------------------------------------------------------------------
@pytest.fixture
def clean_install() -> Iterator[None]:
    uninstall()
    yield
    uninstall()


def test_install_covers_existing_and_later_handlers(clean_install: None, canary: Canary) -> None:
    existing = logging.getLogger("piimw.tests.install.existing")
    before = io.StringIO()
    h_before = logging.StreamHandler(before)
    existing.handlers = [h_before]
    existing.propagate = False
    f = install()
    assert f in h_before.filters
    assert install() is f
    assert h_before.filters.count(f) == 1
    later_logger = logging.getLogger("piimw.tests.install.later")
    later_logger.propagate = False
    after = io.StringIO()
    h_after = logging.StreamHandler(after)
    later_logger.addHandler(h_after)
    assert f in h_after.filters
    with activate(canary.exchange()):
        existing.warning("x %s", canary.name)
        later_logger.warning("y %s", canary.card)
    canary.assert_clean([before.getvalue(), after.getvalue()])
    uninstall()
    assert f not in h_before.filters
    assert f not in h_after.filters
    assert logging.Logger.addHandler is piilog._next_add_handler
    existing.handlers = []
    later_logger.handlers = []


def test_install_catches_dict_config(clean_install: None, canary: Canary) -> None:
    install()
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"mem": {"class": "logging.StreamHandler", "stream": stream}},
        "loggers": {"piimw.tests.dictconfig": {"handlers": ["mem"], "propagate": False,
                                               "level": "INFO"}},
    })
    lg = logging.getLogger("piimw.tests.dictconfig")
    with activate(canary.exchange()):
        lg.info("signup %s", canary.payload())
    canary.assert_clean(stream.getvalue())
    lg.handlers = []


def test_dict_config_factory_without_install(canary: Canary) -> None:
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "filters": {"pii": {"()": "piimw.logging.PIIFilter"}},
        "handlers": {"mem": {"class": "logging.StreamHandler", "stream": stream,
                             "filters": ["pii"]}},
        "loggers": {"piimw.tests.dictfactory": {"handlers": ["mem"], "propagate": False,
                                                "level": "INFO"}},
    })
    lg = logging.getLogger("piimw.tests.dictfactory")
    with activate(canary.exchange()):
        lg.info("signup %s", canary.payload())
    assert "[REDACTED:" in stream.getvalue()
    canary.assert_clean(stream.getvalue())
    lg.handlers = []


def test_stderr_last_resort_is_filtered(clean_install: None, canary: Canary,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lonely = logging.getLogger("piimw.tests.lastresort")
    lonely.handlers = []
    lonely.propagate = False  # no handler anywhere: logging.lastResort prints to stderr
    install()
    with activate(canary.exchange()):
        lonely.warning("signup %s", canary.payload())
        stderr_logger = logging.getLogger("piimw.tests.stderr")
        stderr_logger.propagate = False
        stderr_logger.addHandler(logging.StreamHandler(sys.stderr))
        try:
            raise ValueError(canary.email)
        except ValueError:
            stderr_logger.exception("failed for %s", canary.name)
    err = capsys.readouterr().err
    assert "signup" in err
    assert "failed for" in err
    canary.assert_clean(err, "stderr")
    stderr_logger.handlers = []


def test_stderr_negative_control(canary: Canary, capsys: pytest.CaptureFixture[str]) -> None:
    uninstall()
    lonely = logging.getLogger("piimw.tests.lastresort.raw")
    lonely.handlers = []
    lonely.propagate = False
    with activate(canary.exchange()):
        lonely.warning("signup %s", canary.payload())
    assert "email" in canary.leaks(capsys.readouterr().err)


# -- property -------------------------------------------------------------------------------
_AROUND = st.text(max_size=40)  # any text, control characters and non-BMP included
_PROPERTY_CANARY = Canary()
_PROPERTY_EXCHANGE = _PROPERTY_CANARY.exchange()
_PROPERTY_CAPTURE = Capture("piimw.tests.log.property")


@settings(max_examples=150, deadline=None)
@given(before=_AROUND, after=_AROUND,
       which=st.sampled_from(["email", "name", "card", "phone", "ip", "token"]),
       as_arg=st.booleans())
def test_property_planted_value_never_survives(before: str, after: str, which: str,
                                               as_arg: bool) -> None:
    value = _PROPERTY_CANARY.values[which]
    text = f"{before}{value}{after}"
    stream = _PROPERTY_CAPTURE.stream
    stream.seek(0)
    stream.truncate()
    with activate(_PROPERTY_EXCHANGE):
        if as_arg:
            _PROPERTY_CAPTURE.logger.info("%s", text)
        else:
            _PROPERTY_CAPTURE.logger.info(text)
    out = stream.getvalue()
    assert value not in out


# -- policy and odd handlers ----------------------------------------------------------------
def test_the_log_policy_decides_the_replacement(capture: Capture, canary: Canary) -> None:
    from piimw.config import Config

    cfg = Config.from_dict({"rules": [{"id": "ops-email", "action": "mask", "category": "email",
                                       "sink": "log"}]})
    with activate(canary.exchange(config=cfg)):
        capture.logger.info("signup %s by %s", canary.email, canary.name)
    assert "z***@example.org" in capture.text
    assert "[REDACTED:name]" in capture.text
    canary.assert_clean(capture.text)


def test_socket_handler_pickles_scrubbed_extras(canary: Canary) -> None:
    import pickle
    from logging.handlers import SocketHandler

    record = logging.LogRecord("app", logging.INFO, __file__, 1, "req", (), None)
    record.request = _Request(canary)
    record.payload = canary.payload()
    with activate(canary.exchange()):
        PIIFilter().filter(record)
    assert record.request.path.startswith("/signup?email=")  # the object is still reachable
    data = SocketHandler("localhost", 0).makePickle(record)
    restored = pickle.loads(data[4:])
    assert isinstance(restored["request"], str)
    canary.assert_clean(repr(restored))


def test_extras_with_hidden_values_and_non_string_keys(canary: Canary) -> None:
    from django.utils.datastructures import MultiValueDict

    fmt = FORMAT + " %(params)s %(attempts)s %(cards)s"
    cap = Capture("piimw.tests.log.extras_keys", fmt=fmt)
    params = MultiValueDict({"email": [canary.email, "x"]})  # items() yields "x" only
    with activate(canary.exchange()):
        cap.logger.warning("bad request", extra={
            "params": params, "attempts": {(canary.email, "login"): 3},
            "cards": {int(canary.card): "declined"}})
    cap.logger.handlers = []
    canary.assert_clean(cap.text, "extras")
    assert "'x'" in cap.text


class _HookedRequest(_Request):
    def __structlog__(self) -> dict[str, str]:
        return {"path": self.path}


def test_proxied_extras_do_not_forward_dunders(canary: Canary) -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "req", (), None)
    record.request = _HookedRequest(canary)
    with activate(canary.exchange()):
        PIIFilter().filter(record)
    assert record.request.path.startswith("/signup?email=")  # plain attributes still reach it
    assert not hasattr(record.request, "__structlog__")
    assert not hasattr(record.request, "__dict__")
    with pytest.raises(TypeError):
        vars(record.request)


def test_values_of_an_app_s_headers_referer_query_and_tagged_path_parameters_are_known(
        tmp_path: Any) -> None:
    """Only credentials, client addresses, query values and bodies were known: a name in
    ``X-Customer-Name``, a Referer's query or a tagged path parameter went to the log as
    sent (found by review). Infrastructure headers (a request id) stay readable."""
    import json

    from piimw.config import Config
    from piimw.exchange import Exchange

    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/people/{person}/orders/{order}": {"get": {"parameters": [
            {"name": "person", "in": "path", "required": True, "x-pii": "name",
             "schema": {"type": "string"}},
            {"name": "order", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}}}}
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    config = Config.from_dict({"openapi": [str(tmp_path / "openapi.json")]})
    ex = Exchange(config, "GET", "/people/Zebulon%20Quackenbush/orders/A-1234567", [
        (b"x-customer-name", b"Quincy Fairweather"), (b"x-request-id", b"req-0f3c9a7d"),
        (b"x-datadog-trace-id", b"7362819282736452817"),
        (b"x-forwarded-user", b"zoe.example.login"),  # an authenticating proxy's (review)
        (b"referer", b"https://shop.example/search?q=Ottoline+Brandvold&page=2#top")])
    assert ex.route is not None
    record = logging.LogRecord("app", logging.INFO, __file__, 1,
                               "%s: %s, %s for %s (request %s, order %s)",
                               ("GET /people/Zebulon%20Quackenbush", "Zebulon Quackenbush",
                                "Quincy Fairweather", "Ottoline Brandvold", "req-0f3c9a7d",
                                "A-1234567"), None)
    with activate(ex):
        PIIFilter().filter(record)
    line = record.getMessage()
    for name in ("Zebulon", "Quincy", "Ottoline"):
        assert name not in line
    assert "req-0f3c9a7d" in line
    assert "A-1234567" in line  # untagged path parameter
    trace = logging.LogRecord("app", logging.INFO, __file__, 1, "trace %s",
                              ("7362819282736452817",), None)
    with activate(ex):
        PIIFilter().filter(trace)
    assert trace.getMessage() == "trace 7362819282736452817"  # review: tracing stays
    assert ex.known.search("orders of zoe.example.login")
    # behind a mount or root_path prefix (review: the path did not match the template)
    assert ex.route.path_values("/api/people/Zebulon%20Quackenbush/orders/A-1") == [
        ("Zebulon Quackenbush", "user.name")]
