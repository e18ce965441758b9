"""Log scrubbing: a ``logging.Filter`` for handlers, and :func:`install` to put it everywhere.

Request PII reaches logs through formatted arguments (``logger.info("signup %s", payload)``),
f-string exception messages, tracebacks, ``extra=`` attributes and access-log lines. The filter
scrubs all of them in place on the record, by value (detectors plus the current request's known
values), with the policy for sink ``log`` deciding the replacement. It is a handler filter
because logger-level filters do not see records propagated from child loggers.

Usable from ``dictConfig``::

    "filters": {"pii": {"()": "piimw.logging.PIIFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["pii"]}},
"""

from __future__ import annotations

import copy
import functools
import logging as _logging
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Final

from piimw.api import default_config
from piimw.exchange import current
from piimw.findings import Sink
from piimw.sanitize import PLACEHOLDER, ScrubContext, url_decodings

__all__ = [
    "ACCESS_LOGGERS",
    "KNOWN_LOGGERS",
    "WITHHELD",
    "PIIFilter",
    "install",
    "installed",
    "uninstall",
]

#: Replaces a record that could not be scrubbed (fail closed): never the raw record.
WITHHELD: Final = "[piimw: log record withheld: scrubbing failed]"

#: Access-log loggers: scrubbed field by field, since formatters read ``record.args`` as
#: fields (uvicorn: a 5-tuple, gunicorn: a dict of atoms), and encoded paths and query values
#: read decoded. Django's ``runserver`` writes its line after the request: detectors only.
ACCESS_LOGGERS: Final = frozenset({"uvicorn.access", "gunicorn.access", "django.server"})

KNOWN_LOGGERS: Final = (
    "django", "django.request", "django.server", "werkzeug", "flask.app", "uvicorn",
    "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access", "sentry_sdk.errors",
)

#: The sinks a record was scrubbed for, so that a record passing several filtered handlers
#: costs once per sink (a later filter for another sink may have stricter rules).
#: Leading underscore: Sentry's logging integration leaves such attributes out of ``extra``.
_MARK: Final = "_piimw"
_STANDARD: Final = frozenset(
    _logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName", _MARK}
_SIMPLE: Final = (str, int, float, bool, type(None))
#: The exact types the fast path accepts as arguments (subclasses may render differently).
_SIMPLE_TYPES: Final = frozenset(_SIMPLE)
#: Extras that formatters render with ``record.args`` in place of ``msg`` (uvicorn's
#: ``DefaultFormatter`` with colours uses ``color_message``).
_TEMPLATES: Final = ("color_message",)
#: What ``record.getMessage`` is unless a subclass (or a patch) replaces it.
_GET_MESSAGE: Final = _logging.LogRecord.getMessage


class PIIFilter(_logging.Filter):
    """Scrub a log record in place; never drops a record.

    ``keep_traceback``: after the traceback text is scrubbed into ``record.exc_text``,
    ``record.exc_info`` holds a sanitized copy of the exception (with the original traceback,
    for reporters that show frames; their frame variables are theirs to scrub, as Sentry's and
    Django's are with piimw's integrations). ``False`` sets ``exc_info`` to ``None``.
    """

    def __init__(self, name: str = "", *, sink: Sink = "log", keep_traceback: bool = True) -> None:
        super().__init__(name)
        self.sink: Sink = sink
        self.keep_traceback = keep_traceback

    def filter(self, record: _logging.LogRecord) -> bool:
        # ``name`` is accepted (logging.Filter's signature) but selects nothing: every record
        # is scrubbed, none is dropped.
        #
        # The fast path, which every record takes first. An ordinary record has a ``str``
        # template whose arguments are all simple values (whose rendering cannot change
        # later), no exception, stack or extra attributes, is not an access log and renders;
        # if neither the detectors nor, inside a request, the request's known values find
        # anything in its message, the slow path would change nothing and report nothing, and
        # the record stays as it is. Anything else takes the slow path. The record's fields
        # are read before its ``__dict__`` is (on CPython 3.11+ attribute reads cost more once
        # the instance dict is materialized).
        try:
            msg = record.msg
            args = record.args
            ordinary = type(msg) is str and record.name not in ACCESS_LOGGERS \
                and not (record.exc_info or record.exc_text or record.stack_info)
        except Exception:  # a record missing standard attributes: the slow path fails closed
            ordinary = False
        attrs = record.__dict__
        done = attrs.get(_MARK)
        sink = self.sink
        if done is None:
            attrs[_MARK] = (sink,)
        elif sink in done:
            return True
        else:
            attrs[_MARK] = (*done, sink)
        try:
            exchange = current()
            if ordinary and _STANDARD.issuperset(attrs):  # no extras
                message = _fast_message(record, msg, args)
                if message is not None:
                    hidden = _unshown(message, args)
                    if hidden:
                        message = f"{message}\n{hidden}"
                    encoded = url_decodings(message)  # httpx logs every URL it requests
                    if encoded:
                        message = f"{message}\n{encoded}"
                    if exchange is None:
                        if not default_config().scrubber.detectors.search(message):
                            return True
                    elif not (exchange.config.scrubber.detectors.search(message)
                              or exchange.known.search(message)):
                        return True
            ctx = ScrubContext.current(self.sink, exchange=exchange,
                                       location=f"log:{record.name}")
            self._scrub(record, ctx)
            ctx.flush()
        except Exception:
            _withhold(record)
        return True

    def _scrub(self, record: _logging.LogRecord, ctx: ScrubContext) -> None:
        if record.name in ACCESS_LOGGERS and isinstance(record.args, (tuple, Mapping)) \
                and record.args:
            _scrub_fields(record, ctx)
        else:
            _scrub_message(record, ctx)
        ei = record.exc_info
        if ei and ei[1] is not None:
            clean = ctx.exception(ei[1], copy=True)
            tb = ei[2]
            text = _logging.Formatter().formatException((type(clean), clean, tb))
            record.exc_text = ctx.text_and_urls(text)
            record.exc_info = (type(clean), clean, tb) if self.keep_traceback else None
        elif record.exc_text:
            record.exc_text = ctx.text_and_urls(record.exc_text)
        if record.stack_info:
            record.stack_info = ctx.text_and_urls(record.stack_info)
        attrs = record.__dict__
        for key in attrs.keys() - _STANDARD:  # extras: one set difference, usually empty
            value = attrs[key]
            new = ctx.data(value)
            if new is not value:
                setattr(record, key, new)


def _fast_message(record: _logging.LogRecord, msg: str, args: Any) -> str | None:
    """``record.getMessage()`` if every argument is a simple value; None for the slow path
    (other arguments, or a message that does not render). ``msg`` and ``args``: the record's
    (a ``str`` template)."""
    if args:
        values: Iterable[Any]
        if type(args) is tuple:
            values = args
        elif type(args) is dict:
            values = args.values()
        else:  # another Mapping, or a bare object: the slow path decides
            return None
        for v in values:
            if type(v) not in _SIMPLE_TYPES:
                return None
    try:
        if type(record).getMessage is _GET_MESSAGE:
            # LogRecord.getMessage inlined: str(msg) is msg itself (an exact str).
            return msg % args if args else msg
        return record.getMessage()
    except Exception:
        return None


def _scrub_message(record: _logging.LogRecord, ctx: ScrubContext) -> None:
    try:
        message = record.getMessage()
    except Exception:
        # A broken format would make every handler print msg and args raw (handleError).
        message = f"{_str(record.msg)} {_repr(record.args)} [piimw: message could not be formatted]"
        record.msg = ctx.text_and_urls(message)
        _render_templates(record, record.msg)
        record.args = ()
        return
    scrubbed = ctx.text_and_urls(message)
    # A record class (or a patch) with its own getMessage may add values on every rendering,
    # after this filter: the formatter then gets the checked text, not a new rendering.
    own = type(record).getMessage is not _GET_MESSAGE or "getMessage" in record.__dict__
    if scrubbed is message and _simple(record, message, ctx):
        # Clean: keep the template and arguments (Sentry groups log events by template).
        if own:
            _pin_message(record, message)
        return
    record.msg = scrubbed
    _render_templates(record, scrubbed)
    record.args = ()
    if "message" in record.__dict__:
        record.message = scrubbed
    if own:
        _pin_message(record, scrubbed)


def _render_templates(record: _logging.LogRecord, fallback: str) -> None:
    """Before ``record.args`` go: render the extras a formatter uses as the template in place
    of ``msg`` (uvicorn's colour formatter and ``color_message``), which would otherwise show
    their bare ``%s`` placeholders. The extras are scrubbed after this."""
    attrs = record.__dict__
    for key in _TEMPLATES:
        template = attrs.get(key)
        if isinstance(template, str):
            try:
                attrs[key] = template % record.args if record.args else template
            except Exception:
                attrs[key] = fallback


def _pin_message(record: _logging.LogRecord, text: str) -> None:
    """Make ``record.getMessage()`` return ``text`` (picklable, for ``QueueHandler``)."""
    setattr(record, "getMessage", functools.partial(str, text))  # noqa: B010


def _simple(record: _logging.LogRecord, message: str, ctx: ScrubContext) -> bool:
    """Can the template and arguments stay? Only simple values (no other rendering differs)
    that are clean where the message does not show them whole."""
    if not isinstance(record.msg, str):
        return False
    args = record.args
    if not args:
        return True
    values: Iterable[Any] = args.values() if isinstance(args, Mapping) else args
    if not all(isinstance(v, _SIMPLE) for v in values):
        return False
    hidden = _unshown(message, args)
    return not (hidden and (ctx.changes(hidden) or ctx.changes(url_decodings(hidden))))


def _unshown(message: str, args: Any) -> str:
    """The text of the arguments that ``message`` does not show whole, one per line.

    A format can hide an argument (``%.8s``, ``%.0s``, ``%x``, a mapping's unused keys), and
    handlers that read ``record.args`` see all of it: ``HTTPHandler`` sends the record's
    attributes, Sentry sends them as ``params``. What the message shows whole was checked
    with it; the rest is checked here.
    """
    values: Iterable[Any]
    if type(args) is tuple:
        values = args
    elif isinstance(args, Mapping):
        values = [*args.keys(), *args.values()]
    else:
        values = (args,)
    out: list[str] | None = None
    for v in values:
        t = type(v)
        if t is str:
            text = v
        elif t is int and v.bit_length() <= 256:  # longer: no identifier (str() may refuse)
            text = str(v)
        elif v is None or isinstance(v, (bool, int)):
            continue
        else:
            text = _str(v)
        if text in message:
            continue
        if out is None:
            out = [text]
        else:
            out.append(text)
    return "" if out is None else "\n".join(out)


def _scrub_fields(record: _logging.LogRecord, ctx: ScrubContext) -> None:
    """Access logs: formatters unpack ``args`` (uvicorn: a 5-tuple, gunicorn: a dict of atoms)."""
    if isinstance(record.msg, str):
        record.msg = ctx.text(record.msg)
    args = record.args
    if isinstance(args, Mapping):
        changed = {k: _field(v, ctx) for k, v in args.items()}
        if any(changed[k] is not v for k, v in args.items()):
            new: Mapping[str, Any] = changed
            if isinstance(args, dict):
                try:
                    kept = copy.copy(args)  # keeps gunicorn's SafeAtoms (missing atom: "-")
                    for k, v in changed.items():
                        dict.__setitem__(kept, k, v)
                    new = kept
                except Exception:
                    new = changed
            record.args = new
    elif isinstance(args, tuple):
        fields = tuple(_field(v, ctx) for v in args)
        if any(a is not b for a, b in zip(fields, args, strict=True)):
            record.args = fields


def _field(value: Any, ctx: ScrubContext) -> Any:
    if isinstance(value, str):
        text = ctx.text(value)
        return ctx.url_decoded(text)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if not ctx.changes(str(value)) else 0  # keeps %d working
    if isinstance(value, bytes):
        return ctx.text(value.decode("utf-8", "replace"))
    return ctx.text(_str(value))


def _str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return PLACEHOLDER


def _repr(obj: object) -> str:
    try:
        return repr(obj)
    except Exception:
        return PLACEHOLDER


def _withhold(record: _logging.LogRecord) -> None:
    """Fail closed: nothing of the original record survives but its level and origin."""
    record.msg = WITHHELD
    args = record.args
    if record.name in ACCESS_LOGGERS and isinstance(args, tuple):
        record.args = tuple(v if isinstance(v, int) else PLACEHOLDER for v in args)
    elif record.name in ACCESS_LOGGERS and isinstance(args, Mapping):
        record.args = {k: PLACEHOLDER for k in args}
    else:
        record.args = ()
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    if "message" in record.__dict__:
        record.message = WITHHELD
    for key in record.__dict__.keys() - _STANDARD:
        setattr(record, key, PLACEHOLDER)


# -- install everywhere -------------------------------------------------------------------
class _Installation:
    __slots__ = ("filter", "handlers")

    def __init__(self, pii_filter: PIIFilter) -> None:
        self.filter = pii_filter
        self.handlers: weakref.WeakSet[_logging.Handler] = weakref.WeakSet()


_lock = threading.RLock()
_state: _Installation | None = None


def _attach(handler: _logging.Handler) -> None:
    st = _state
    if st is None:
        return
    handler.addFilter(st.filter)  # no-op if present: Filterer checks membership
    st.handlers.add(handler)


#: What our ``addHandler`` wrapper calls: logging's own, or a wrapper installed before ours.
#: Kept after :func:`uninstall`, for when a later wrapper still calls ours.
_next_add_handler: Any = _logging.Logger.addHandler
#: Our wrapper is somewhere in the ``addHandler`` chain (possibly under someone else's).
_hooked = False


def _add_handler(self: _logging.Logger, hdlr: _logging.Handler) -> None:
    """Replacement for ``Logger.addHandler``: every handler added later gets the filter."""
    _next_add_handler(self, hdlr)
    if _state is not None:
        _attach(hdlr)


def install(loggers: Iterable[str] | None = None, *,
            pii_filter: PIIFilter | None = None) -> PIIFilter:
    """Attach one :class:`PIIFilter` to every handler that exists now and every one added later.

    Now: the handlers of the root logger, of every existing logger, of :data:`KNOWN_LOGGERS`
    and of ``loggers``, and ``logging.lastResort`` (what prints when no handler is configured).
    Later: ``logging.Logger.addHandler`` is wrapped, which catches ``dictConfig``,
    ``basicConfig`` and framework set-up alike. Handlers appended to ``logger.handlers``
    directly, or used without a logger (a ``QueueListener``'s targets), are not seen: filter
    the ``QueueHandler`` instead, where the request's context is still available.
    Idempotent; undone by :func:`uninstall`.
    """
    global _state, _next_add_handler, _hooked
    with _lock:
        if _state is None:
            _state = _Installation(pii_filter or PIIFilter())
        elif pii_filter is not None and pii_filter is not _state.filter:
            _swap_filter(_state, pii_filter)
        st = _state
        manager = _logging.Logger.manager
        names = set(KNOWN_LOGGERS) | set(loggers or ())
        targets: list[_logging.Logger] = [_logging.getLogger()]
        targets += [lg for lg in list(manager.loggerDict.values())
                    if isinstance(lg, _logging.Logger)]
        targets += [_logging.getLogger(n) for n in sorted(names)]
        for lg in targets:
            for h in list(lg.handlers):
                _attach(h)
        if _logging.lastResort is not None:
            _attach(_logging.lastResort)
        if not _hooked:
            _next_add_handler = _logging.Logger.addHandler
            _logging.Logger.addHandler = _add_handler  # type: ignore[method-assign]
            _hooked = True
        return st.filter


def _swap_filter(st: _Installation, new: PIIFilter) -> None:
    for h in list(st.handlers):
        h.removeFilter(st.filter)
    st.filter = new
    for h in list(st.handlers):
        h.addFilter(new)


def uninstall() -> None:
    """Remove the filter from every handler :func:`install` touched and unwrap ``addHandler``."""
    global _state, _hooked
    with _lock:
        st = _state
        if st is None:
            return
        for h in list(st.handlers):
            h.removeFilter(st.filter)
        if _logging.Logger.addHandler is _add_handler:
            _logging.Logger.addHandler = _next_add_handler  # type: ignore[method-assign]
            _hooked = False
        # else: someone wrapped it after us; our wrapper stays in their chain as a no-op.
        _state = None


def installed() -> PIIFilter | None:
    """The installed filter, or None."""
    st = _state
    return st.filter if st is not None else None
