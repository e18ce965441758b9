"""The Django error channel: the technical 500 page and ``mail_admins``, with Django's own code.

Django is configured once per process by whichever test module gets there first (the adapter
tests' settings if they are importable); everything this module needs is applied with
``override_settings``, so the order of modules in a run does not matter.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pii_canary import Canary

from piimw.exchange import activate

REPORTER_FILTER = "piimw.contrib.django.reporting.PIIExceptionReporterFilter"
REPORTER = "piimw.contrib.django.reporting.PIIExceptionReporter"

urlpatterns: list[Any] = []  # ROOT_URLCONF for the reports (Django resolves the raising view)


def _configure() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    try:
        from adapters.django_settings import setup  # the adapter tests' settings, if present
    except ImportError:
        settings.configure(DEBUG=False, SECRET_KEY="piimw-tests-not-a-secret",
                           ALLOWED_HOSTS=["testserver"], DATABASES={}, USE_TZ=True,
                           INSTALLED_APPS=[], LOGGING_CONFIG=None)
        django.setup()
    else:
        setup()


@pytest.fixture
def django_env() -> Iterator[None]:
    _configure()
    from django.core import mail
    from django.test.utils import override_settings
    from django.views.debug import get_default_exception_reporter_filter

    overrides = override_settings(
        DEBUG=True, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, USE_I18N=False,
        ADMINS=[("Ops", "ops@example.com")], SERVER_EMAIL="root@example.com",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        DEFAULT_EXCEPTION_REPORTER_FILTER=REPORTER_FILTER, DEFAULT_EXCEPTION_REPORTER=REPORTER)
    overrides.enable()
    _forget_translation_functions()
    get_default_exception_reporter_filter.cache_clear()
    mail.outbox = []
    try:
        yield
    finally:
        overrides.disable()
        # Django picks trans_real or trans_null by USE_I18N on first use and keeps it: without
        # this, later tests (the Django adapter's language-dependent route memo) ran without
        # translations when they came after these.
        _forget_translation_functions()
        get_default_exception_reporter_filter.cache_clear()
        mail.outbox = []


def _forget_translation_functions() -> None:
    from django.utils import translation

    translation._trans.__dict__.clear()


def _request(c: Canary, *, accept: str = "text/html", json_body: bool = False) -> Any:
    from django.test import RequestFactory

    rf = RequestFactory()
    path = f"/signup?email={c.email}&ref={c.name}"
    extra = {"HTTP_ACCEPT": accept, "REMOTE_ADDR": c.ip,
             "HTTP_COOKIE": f"sessionid=x; tracking={c.token}",
             "HTTP_X_CUSTOMER_PHONE": c.phone}
    if json_body:
        req = rf.post(path, data=json.dumps(c.payload()), content_type="application/json",
                      **extra)
        req.body  # noqa: B018 - read, as a view parsing JSON would
    else:
        req = rf.post(path, data={"email": c.email, "card": c.card, "name": c.name}, **extra)
    return req


def _view(request: Any) -> None:
    """A view failing the way the issue describes: f-string message, chained DB error."""
    email = request.POST.get("email") or json.loads(request.body)["email"]
    customer = {"email": email, "phone": request.META["HTTP_X_CUSTOMER_PHONE"]}  # noqa: F841
    try:
        raise LookupError(f"DETAIL:  Key (email)=({email}) already exists.")
    except LookupError as db_error:
        raise ValueError(f"signup failed for {email}") from db_error


def _fail(request: Any) -> tuple[Any, BaseException, Any]:
    try:
        _view(request)
    except ValueError:
        exc_info = sys.exc_info()
        assert exc_info[1] is not None
        return exc_info
    raise AssertionError("the view did not fail")


@pytest.mark.usefixtures("django_env")
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_technical_500_page_is_scrubbed(canary: Canary, accept: str) -> None:
    from django.views.debug import technical_500_response

    request = _request(canary, accept=accept)
    exc_type, exc, tb = _fail(request)
    response = technical_500_response(request, exc_type, exc, tb)
    body = response.content.decode()
    assert response.status_code == 500
    assert "signup failed for [REDACTED:email]" in body
    assert "already exists" in body
    canary.assert_clean(body, f"technical 500 ({accept})")
    assert canary.email in str(exc)  # the live exception is left to the app


@pytest.mark.usefixtures("django_env")
def test_technical_500_without_an_exchange_uses_the_request_values(canary: Canary) -> None:
    """No piimw exchange (middleware missing): the report harvests the request itself."""
    from django.views.debug import technical_500_response

    request = _request(canary, json_body=True)
    response = technical_500_response(request, *_fail(request))
    canary.assert_clean(response.content.decode(), "technical 500 without exchange")


@pytest.mark.usefixtures("django_env")
def test_technical_500_inside_an_exchange(canary: Canary) -> None:
    from django.views.debug import technical_500_response

    request = _request(canary)
    with activate(canary.exchange()):
        response = technical_500_response(request, *_fail(request))
    canary.assert_clean(response.content.decode())


@pytest.mark.usefixtures("django_env")
def test_negative_control_stock_reporter_leaks(canary: Canary) -> None:
    from django.test.utils import override_settings
    from django.views.debug import get_default_exception_reporter_filter, technical_500_response

    request = _request(canary)
    with override_settings(DEFAULT_EXCEPTION_REPORTER="django.views.debug.ExceptionReporter",
                           DEFAULT_EXCEPTION_REPORTER_FILTER=(
                               "django.views.debug.SafeExceptionReporterFilter")):
        get_default_exception_reporter_filter.cache_clear()
        body = technical_500_response(request, *_fail(request)).content.decode()
    get_default_exception_reporter_filter.cache_clear()
    assert {"email", "name", "card", "phone", "token"} <= set(canary.leaks(body))


@pytest.mark.usefixtures("django_env")
def test_filter_alone_scrubs_frames_post_meta_cookies(canary: Canary) -> None:
    from django.views.debug import ExceptionReporter

    from piimw.contrib.django.reporting import PIIExceptionReporterFilter

    request = _request(canary)
    exc_type, exc, tb = _fail(request)
    flt = PIIExceptionReporterFilter()
    assert flt.is_active(request)  # with DEBUG=True too
    frames = ExceptionReporter(request, exc_type, exc, tb).get_traceback_frames()
    shown = [repr(v) for f in frames for _, v in flt.get_traceback_frame_variables(
        request, f["tb"].tb_frame)]
    canary.assert_clean(shown, "frame variables")
    canary.assert_clean(repr(dict(flt.get_post_parameters(request).lists())), "POST")
    canary.assert_clean(repr(flt.get_safe_request_meta(request)), "META")
    canary.assert_clean(repr(flt.get_safe_cookies(request)), "cookies")


@pytest.mark.usefixtures("django_env")
def test_mail_admins_subject_text_and_html(canary: Canary) -> None:
    from django.core import mail

    from piimw.contrib.django.reporting import PIIAdminEmailHandler

    handler = PIIAdminEmailHandler(include_html=True)
    log = logging.getLogger("piimw.tests.django.request")
    log.handlers = [handler]
    log.propagate = False
    request = _request(canary)
    try:
        _view(request)
    except ValueError:
        with activate(canary.exchange()):
            log.error("Internal Server Error: %s", request.get_full_path(), exc_info=True,
                      extra={"status_code": 500, "request": request})
    log.handlers = []
    assert len(mail.outbox) == 1
    msg = mail.outbox[0]
    html = msg.alternatives[0][0]
    assert "Internal Server Error: /signup?email=[REDACTED:email]" in msg.subject
    assert "signup failed for [REDACTED:email]" in msg.body
    assert "<html" in html.lower()
    assert "EXTERNAL IP" in msg.subject  # the request still reached the handler
    canary.assert_clean([msg.subject, msg.body, html], "the admin email")


@pytest.mark.usefixtures("django_env")
def test_negative_control_stock_admin_email_leaks(canary: Canary) -> None:
    from django.core import mail
    from django.test.utils import override_settings
    from django.utils.log import AdminEmailHandler
    from django.views.debug import get_default_exception_reporter_filter

    log = logging.getLogger("piimw.tests.django.request.raw")
    log.handlers = [AdminEmailHandler(include_html=True)]
    log.propagate = False
    request = _request(canary)
    with override_settings(DEFAULT_EXCEPTION_REPORTER="django.views.debug.ExceptionReporter",
                           DEFAULT_EXCEPTION_REPORTER_FILTER=(
                               "django.views.debug.SafeExceptionReporterFilter")):
        get_default_exception_reporter_filter.cache_clear()
        try:
            _view(request)
        except ValueError:
            log.error("Internal Server Error: %s", request.get_full_path(), exc_info=True,
                      extra={"status_code": 500, "request": request})
    get_default_exception_reporter_filter.cache_clear()
    log.handlers = []
    msg = mail.outbox[0]
    assert {"email", "name"} <= set(canary.leaks([msg.subject, msg.body, msg.alternatives[0][0]]))


def _form_request(c: Canary, accept: str = "text/html") -> Any:
    """A form POST whose view fails before reading ``request.POST`` (the form is not parsed)."""
    from django.test import RequestFactory

    return RequestFactory().post(
        "/signup?ref=1", data={"full_name": c.name, "answer": _answer(c), "email": c.email,
                               "card": c.card},
        HTTP_ACCEPT=accept)


def _answer(c: Canary) -> str:
    return f"hunter2-my-pass-phrase-{c.hex}"  # free text no detector recognises


def _fail_before_post(request: Any) -> tuple[Any, BaseException, Any]:
    try:
        raise PermissionError("CSRF check failed")  # e.g. a middleware, before the form is read
    except PermissionError:
        exc_info = sys.exc_info()
        assert exc_info[1] is not None
        return exc_info


@pytest.mark.usefixtures("django_env")
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_technical_500_form_not_read_by_the_view_is_known(canary: Canary, accept: str) -> None:
    """No exchange; the report parses ``request.POST`` itself: its fields are known values."""
    from django.views.debug import technical_500_response

    request = _form_request(canary, accept)
    assert getattr(request, "_post", None) is None
    body = technical_500_response(request, *_fail_before_post(request)).content.decode()
    assert "full_name" in body
    assert "answer" in body  # the POST section is shown, its values scrubbed
    assert _answer(canary) not in body
    canary.assert_clean(body, f"technical 500, form not read by the view ({accept})")


@pytest.mark.usefixtures("django_env")
def test_mail_admins_form_not_read_by_the_view_is_known(canary: Canary) -> None:
    from django.core import mail

    from piimw.contrib.django.reporting import PIIAdminEmailHandler

    log = logging.getLogger("piimw.tests.django.request.form")
    log.handlers = [PIIAdminEmailHandler(include_html=True)]
    log.propagate = False
    request = _form_request(canary)
    log.error("Internal Server Error: %s", request.get_full_path(),
              exc_info=_fail_before_post(request), extra={"status_code": 500, "request": request})
    log.handlers = []
    assert len(mail.outbox) == 1
    msg = mail.outbox[0]
    parts = [msg.subject, msg.body, msg.alternatives[0][0]]
    assert "full_name" in msg.body
    assert not [p for p in parts if _answer(canary) in p]
    canary.assert_clean(parts, "the admin email, form not read by the view")


@pytest.mark.usefixtures("django_env")
def test_report_harvest_follows_the_form_being_parsed(canary: Canary) -> None:
    """The harvest cached before ``request.POST`` was parsed is redone once it is."""
    from piimw.contrib.django.reporting import report_context

    request = _form_request(canary)
    assert not report_context(request).hit(_answer(canary))
    request.POST  # noqa: B018 - parsed later, as the report does
    assert report_context(request).hit(_answer(canary))
    assert report_context(request).extra_known is report_context(request).extra_known


@pytest.mark.usefixtures("django_env")
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_request_url_is_read_decoded_on_the_page_and_in_the_mail(accept: str) -> None:
    """The debug page and the admin mail show the request URL as sent: a card or phone
    number percent-encoded in its path or query hid its shape from the detectors (found by
    review)."""
    from django.test import RequestFactory
    from django.views.debug import get_exception_reporter_class, technical_500_response

    # Built from parts: the page quotes this function's source lines around the raise.
    card, phone = "%20".join(["4242"] * 4), "%20".join(["%2B1", "415", "555", "0123"])
    request = RequestFactory().get(f"/cards/{card}?phone={phone}", HTTP_ACCEPT=accept)
    try:
        raise ValueError("boom")
    except ValueError:
        exc_type, exc, tb = sys.exc_info()
    page = technical_500_response(request, exc_type, exc, tb).content.decode()
    mail = get_exception_reporter_class(request)(
        request, exc_type, exc, tb, is_email=True).get_traceback_text()
    for shown in (page, mail):
        assert "[REDACTED:card]" in shown
        for needle in ("4242%204242", "4242 4242", "%2B1%20415", "415%20555"):
            assert needle not in shown
