"""Django error reports (debug 500 page, ``mail_admins``) scrubbed by value.

Django's ``SafeExceptionReporterFilter`` hides settings and POST fields by *name*, and only when
``DEBUG`` is off; the exception message, frame variables, the URL and query string are shown
as they are. Settings::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "piimw.contrib.django.reporting.PIIExceptionReporterFilter"
    DEFAULT_EXCEPTION_REPORTER = "piimw.contrib.django.reporting.PIIExceptionReporter"
    LOGGING = {... "mail_admins": {"class": "piimw.contrib.django.reporting.PIIAdminEmailHandler"}}

Values are found by the detectors, the current request's known values and, in case no piimw
exchange is active, the values this Django request brought in (query, form, cookies, JSON body,
client address). The report is scrubbed part by part and the rendered page once more.
"""

# mypy: disable-error-code="import-untyped,misc,no-any-return"

from __future__ import annotations

import contextlib
import pprint
import threading
from typing import Any

try:
    from django.conf import settings
    from django.http import QueryDict
    from django.utils.log import AdminEmailHandler
    from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter
except ImportError as exc:  # pragma: no cover - exercised without Django
    raise ImportError("piimw.contrib.django needs Django: pip install 'piimw[django]'") from exc

import orjson

from piimw.detect import KnownValues, default_detectors
from piimw.exchange import current
from piimw.logging import PIIFilter
from piimw.sanitize import PLACEHOLDER, ScrubContext

__all__ = ["PIIAdminEmailHandler", "PIIExceptionReporter", "PIIExceptionReporterFilter"]

_KNOWN_ATTR = "_piimw_report_known"
MAX_JSON_BODY = 1 << 20


def _body_state(request: Any) -> tuple[bool, bool]:
    """Whether Django parsed the form (``request.POST``) and read the body, so far."""
    return (getattr(request, "_post", None) is not None,
            isinstance(getattr(request, "_body", None), bytes))


def _harvest(request: Any) -> KnownValues | None:
    """Values the Django request brought in, remembered per request.

    Harvested again once the form was parsed or the body read since (the report parses
    ``request.POST`` itself when the view failed before reading it), so the values shown in
    the report are known values too.
    """
    if request is None:
        return None
    request = getattr(request, "_piimw_obj", request)  # a log record's ScrubbedProxy
    state = _body_state(request)
    cached = getattr(request, _KNOWN_ATTR, None)
    if (isinstance(cached, tuple) and len(cached) == 2 and cached[0] == state
            and isinstance(cached[1], KnownValues)):
        return cached[1]
    known = KnownValues()
    detectors = default_detectors()

    def add(value: Any, category: str = "user") -> None:
        if isinstance(value, str) and value:
            if category == "user":  # name it as a detector would, when one recognises it
                spans = detectors.find(value)
                if len(spans) == 1 and spans[0].end - spans[0].start >= len(value.strip()):
                    category = spans[0].category
            known.add(value, category)

    with contextlib.suppress(Exception):
        for _, values in request.GET.lists():
            for v in values:
                add(v)
    with contextlib.suppress(Exception):
        # Only bodies Django parsed already: the report must not read the stream.
        if getattr(request, "_post", None) is not None:
            for _, values in request._post.lists():
                for v in values:
                    add(v)
    with contextlib.suppress(Exception):
        for v in request.COOKIES.values():
            if len(v) >= 8:
                add(v, "user.authorization.credentials")
    with contextlib.suppress(Exception):
        meta = request.META
        for key in ("REMOTE_ADDR", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP"):
            for part in str(meta.get(key) or "").split(","):
                part = part.strip()
                if part and part not in ("127.0.0.1", "::1"):
                    add(part, "user.device.ip_address")
        auth = str(meta.get("HTTP_AUTHORIZATION") or "")
        if auth:
            scheme, _, token = auth.partition(" ")
            add(token.strip() or scheme, "user.authorization.credentials")
    with contextlib.suppress(Exception):
        body = getattr(request, "_body", None)
        ctype = str(request.META.get("CONTENT_TYPE") or "")
        if isinstance(body, bytes) and len(body) <= MAX_JSON_BODY and "json" in ctype:
            _leaves(orjson.loads(body), add)
    with contextlib.suppress(Exception):
        setattr(request, _KNOWN_ATTR, (state, known))
    return known


def _leaves(doc: Any, add: Any, depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(doc, dict):
        for v in doc.values():
            _leaves(v, add, depth + 1)
    elif isinstance(doc, list):
        for v in doc:
            _leaves(v, add, depth + 1)
    elif isinstance(doc, str):
        add(doc)
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool) and abs(doc) >= 10**6:
        add(str(doc))


def report_context(request: Any) -> ScrubContext:
    """A scrubbing context for sink ``error``: this request's exchange and its own values."""
    return ScrubContext(sink="error", exchange=current(), extra_known=_harvest(request),
                        location="error:django")


class _Shown:
    """A frame variable as it will be shown: Django ``pprint``s it, which calls ``repr``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class PIIExceptionReporterFilter(SafeExceptionReporterFilter):
    """Value-scrubs frame variables, POST, META and cookies; active with ``DEBUG`` too."""

    def is_active(self, request: Any) -> bool:
        return True

    def get_safe_request_meta(self, request: Any) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        ctx = report_context(request)
        return {k: ctx.data(v) for k, v in meta.items()}

    def get_safe_cookies(self, request: Any) -> dict[str, Any]:
        cookies = super().get_safe_cookies(request)
        ctx = report_context(request)
        return {k: ctx.data(v) for k, v in cookies.items()}

    def get_post_parameters(self, request: Any) -> Any:
        params = super().get_post_parameters(request)
        if not params:
            return params
        ctx = report_context(request)
        out = QueryDict(mutable=True)
        lists = params.lists() if hasattr(params, "lists") else \
            ((k, [v]) for k, v in params.items())
        for k, values in lists:
            out.setlist(ctx.text(str(k)), [ctx.data(v) for v in values])
        return out

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        ctx = report_context(request)
        out = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            try:
                shown = pprint.pformat(value)
            except Exception as e:
                shown = f"Error in formatting: {type(e).__name__}"
            out.append((name, _Shown(ctx.text_and_urls(shown))))
        ctx.flush()
        return out


class PIIExceptionReporter(ExceptionReporter):
    """Reports built from a sanitized copy of the exception chain, scrubbed part by part, and
    the rendered HTML and text scrubbed once more."""

    def __init__(self, request: Any, exc_type: Any, exc_value: Any, tb: Any,
                 is_email: bool = False) -> None:
        super().__init__(request, exc_type, exc_value, tb, is_email)
        configured: Any = getattr(self, "filter", None)
        if not isinstance(configured, PIIExceptionReporterFilter):
            self.filter = PIIExceptionReporterFilter()
        self._ctx = report_context(request)
        clean: Any = exc_value
        if isinstance(exc_value, BaseException):
            clean = self._ctx.exception(exc_value, copy=True)
        elif isinstance(exc_value, str):
            clean = self._ctx.text(exc_value)
        self.exc_value = clean
        template_info: Any = getattr(self, "template_info", None)
        if template_info is not None:
            self.template_info = self._ctx.data(template_info)

    def _refresh_known(self) -> None:
        """Take in the values of a form the report itself parsed (``request.POST``)."""
        known = _harvest(self.request)
        self._ctx.extra_known = known if known else None

    def get_traceback_data(self) -> dict[str, Any]:
        c: dict[str, Any] = super().get_traceback_data()  # may parse request.POST
        self._refresh_known()
        ctx = self._ctx
        for key in ("request_insecure_uri", "exception_value", "exception_notes", "user_str"):
            if isinstance(c.get(key), str):
                # The request URL is shown as sent: its encoded parts are read decoded.
                c[key] = ctx.text_and_urls(c[key])
        if "request_GET_items" in c:
            c["request_GET_items"] = [(ctx.text(str(k)), ctx.data(v))
                                      for k, v in c["request_GET_items"]]
        if "request_FILES_items" in c:
            c["request_FILES_items"] = [(ctx.text(str(k)), ctx.text(str(v)))
                                        for k, v in c["request_FILES_items"]]
        if c.get("unicode_hint"):
            c["unicode_hint"] = PLACEHOLDER  # a slice of raw request bytes: cannot be checked
        ctx.flush()
        return c

    def get_traceback_html(self) -> str:
        html = self._ctx.text(super().get_traceback_html())
        self._ctx.flush()
        return html

    def get_traceback_text(self) -> str:
        text = self._ctx.text(super().get_traceback_text())
        self._ctx.flush()
        return text


class PIIAdminEmailHandler(AdminEmailHandler):
    """``mail_admins`` with a scrubbed subject, text body and HTML body.

    The record is scrubbed by a :class:`~piimw.logging.PIIFilter` (sink ``error``), the report
    is built by :class:`PIIExceptionReporter`, and what is mailed is scrubbed once more.
    """

    def __init__(self, include_html: bool = False, email_backend: str | None = None,
                 reporter_class: str | None = None) -> None:
        super().__init__(include_html, email_backend,
                         reporter_class or f"{__name__}.PIIExceptionReporter")
        self.addFilter(PIIFilter(sink="error"))
        self._local = threading.local()

    def emit(self, record: Any) -> None:
        if not settings.ADMINS:  # Django skips this only when send_mail is not overridden
            return
        self._local.request = getattr(record, "request", None)
        try:
            super().emit(record)
        finally:
            self._local.request = None

    def send_mail(self, subject: str, message: str, *args: Any, **kwargs: Any) -> None:
        ctx = report_context(getattr(self._local, "request", None))
        html = kwargs.get("html_message")
        if isinstance(html, str):
            kwargs["html_message"] = ctx.text(html)
        super().send_mail(ctx.text(subject), ctx.text(message), *args, **kwargs)
        ctx.flush()
