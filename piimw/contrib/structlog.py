"""structlog: a processor that scrubs every value of the event dict by value.

Put it after the processors that add data (``merge_contextvars``, ``add_log_level``,
``StackInfoRenderer``) and before the renderer::

    structlog.configure(processors=[..., scrub_processor, structlog.processors.JSONRenderer()])

An ``exc_info`` entry is rendered here, from a sanitized copy, into ``exception`` (what
``format_exc_info`` does), so that no later processor can format the raw exception or show
its frame variables.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

try:
    from structlog.typing import EventDict, WrappedLogger
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "piimw.contrib.structlog needs structlog: pip install 'piimw[structlog]'") from e

from piimw.findings import Sink
from piimw.sanitize import ScrubContext

__all__ = ["PIIProcessor", "scrub_processor"]

WITHHELD = "[piimw: log event withheld: scrubbing failed]"


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
            new_key = ctx.text(key) if isinstance(key, str) else key
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
