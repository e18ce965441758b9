"""structlog: a processor that scrubs every value of the event dict by value.

Put it after the processors that add data (``merge_contextvars``, ``add_log_level``,
``StackInfoRenderer``) and before the renderer::

    structlog.configure(processors=[..., scrub_processor, structlog.processors.JSONRenderer()])

An ``exc_info`` entry is rendered here, from a sanitized copy, into ``exception`` (what
``format_exc_info`` does), so that no later processor can format the raw exception or show
its frame variables. Values are scrubbed as renderers will show them: ``JSONRenderer``
calls ``__structlog__`` before ``repr``, and orjson writes every field of a dataclass and
the whole storage of a dict subclass, none of which a scrubbed ``repr`` covers.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import sys
import traceback
import uuid
from typing import Any, Final

try:
    from structlog.typing import EventDict, WrappedLogger
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "piimw.contrib.structlog needs structlog: pip install 'piimw[structlog]'") from e

from piimw.findings import Sink
from piimw.sanitize import MAX_DEPTH, PLACEHOLDER, ScrubContext, safe_repr, safe_str

__all__ = ["PIIProcessor", "scrub_processor"]

WITHHELD = "[piimw: log event withheld: scrubbing failed]"
#: Types every renderer shows as their value: kept for ``ctx.data`` to scrub.
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})
#: ``ProcessorFormatter``'s LogRecord: stdlib processors read it, ``remove_processors_meta``
#: drops it before rendering; ``ctx.data`` wraps it where its renderings show PII.
_META: Final = frozenset({"_record"})
_FAILED: Final = object()
#: Values renderers show natively (orjson, rich), holding no free text: kept as they are.
_NATIVE: Final = (datetime.date, datetime.time, datetime.timedelta, uuid.UUID, decimal.Decimal)


class PIIProcessor:
    """A structlog processor for ``sink`` (``log`` by default); :data:`scrub_processor` is one."""

    def __init__(self, sink: Sink = "log") -> None:
        self.sink: Sink = sink

    def __call__(self, logger: WrappedLogger, method_name: str,
                 event_dict: EventDict) -> EventDict:
        try:
            return self._scrub(event_dict)
        except Exception:
            level = event_dict.get("level")
            out: EventDict = {"event": WITHHELD}
            if isinstance(level, str):
                out["level"] = level
            return out

    def _scrub(self, event_dict: EventDict) -> EventDict:
        ctx = ScrubContext.current(self.sink, location="log:structlog")
        out: EventDict = {}
        exc_info = event_dict.get("exc_info")
        for key, value in event_dict.items():
            if key == "exc_info":
                continue
            if type(value) not in _SCALARS and key not in _META:
                value = _plain(value, ctx, 0, set())
            new_key = ctx.text(key) if isinstance(key, str) else _key(key, ctx)
            out[new_key] = ctx.data(value)
        if exc_info:
            exc = _exception(exc_info)
            if exc is not None:
                clean = ctx.exception(exc, copy=True)
                text = "".join(traceback.format_exception(type(clean), clean,
                                                          clean.__traceback__))
                out["exception"] = ctx.text(text.rstrip("\n"))
        ctx.flush()
        return out


def _key(key: Any, ctx: ScrubContext) -> Any:
    """A key that is not a string: its scrubbed text where it changes."""
    new = ctx.data(key)
    return key if new is key else ctx.text(str(new))


def _plain(value: Any, ctx: ScrubContext, depth: int, active: set[int]) -> Any:
    """``value`` as data for ``ctx.data`` to scrub, as renderers will show it: containers are
    walked, an object with ``__structlog__`` becomes what that returns (``JSONRenderer``
    shows it instead of the ``repr`` that ``ctx.data`` checks), a dataclass whose fields
    hold something to scrub becomes its fields (orjson shows them all, ``repr=False`` ones
    too). The rest stays as it is, for ``ctx.data`` (every value of a multi-value dict; other
    objects: their ``repr`` and ``str``)."""
    t = type(value)
    if t in _SCALARS:
        return value
    if isinstance(value, (dict, list, tuple)):  # subclasses too (orjson writes them alike)
        if depth >= MAX_DEPTH or id(value) in active:
            return PLACEHOLDER
        active.add(id(value))  # an exception withholds the whole event: no finally needed
        if isinstance(value, dict):  # copied only where something changes: data stays cheap
            out: dict[Any, Any] | None = None
            # dict.items: the storage orjson writes; a multi-value dict's own items() shows
            # one value per key (Django's the last, Werkzeug's the first), hiding the rest.
            for k, v in dict.items(value):
                if type(v) in _SCALARS:
                    continue
                nv = _plain(v, ctx, depth + 1, active)
                if nv is not v:
                    if out is None:
                        out = dict(dict.items(value))
                    out[k] = nv
            active.discard(id(value))
            return value if out is None else out
        items: list[Any] | None = None
        for i, v in enumerate(value):
            if type(v) in _SCALARS:
                continue
            nv = _plain(v, ctx, depth + 1, active)
            if nv is not v:
                if items is None:
                    items = list(value)
                items[i] = nv
        active.discard(id(value))
        if items is None:
            return value  # a namedtuple or list subclass keeps its type
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (str, int, float)):
        # a subclass (an enum): JSON shows its value (ctx.data checks it), repr and str more
        if not (ctx.changes(safe_repr(value)) or ctx.changes(safe_str(value))):
            return value
        return safe_repr(value)
    if isinstance(value, _NATIVE):
        return value
    if depth < MAX_DEPTH and callable(getattr(type(value), "__structlog__", None)):
        try:
            rendered = value.__structlog__()  # what JSONRenderer would show instead of repr
        except Exception:
            rendered = _FAILED
        if rendered is not _FAILED:
            return _plain(rendered, ctx, depth + 1, active)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        shown = _plain(fields, ctx, depth + 1, active)
        if shown is fields and not (ctx.changes(safe_repr(value))
                                    or ctx.changes(safe_repr(fields))):
            return value
        return shown
    return value


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


_default = PIIProcessor()


def scrub_processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """The processor for sink ``log``: every value, key and exception scrubbed."""
    return _default(logger, method_name, event_dict)
