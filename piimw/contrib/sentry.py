"""Sentry: value-scrub every event, transaction, breadcrumb and log before it leaves.

Sentry's own scrubbing is by key name (``password``, ``authorization``...) and shallow; PII in
exception messages, frame variables, log messages, request bodies, span descriptions (SQL with
literals, URLs with query strings) passes it. Here the whole serialized event tree is walked and
every string is checked against the detectors and the current request's known values, with the
policy for sink ``error`` deciding the replacement.

Either add the integration (it chains the hooks after any you configured)::

    sentry_sdk.init(dsn=..., integrations=[PIIIntegration()])

or pass the functions yourself: ``before_send=before_send``, and so on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

try:
    import sentry_sdk
    from sentry_sdk.integrations import Integration
    from sentry_sdk.scope import add_global_event_processor
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError("piimw.contrib.sentry needs sentry-sdk: pip install 'piimw[sentry]'") from e

from piimw.findings import Sink
from piimw.sanitize import PLACEHOLDER, ScrubbedProxy, ScrubContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from sentry_sdk._types import Event, Hint

__all__ = [
    "PIIIntegration",
    "before_breadcrumb",
    "before_send",
    "before_send_log",
    "before_send_metric",
    "before_send_transaction",
    "scrub_event_tree",
]

#: Keys whose values are identifiers, timestamps or SDK metadata: skipped (they are not PII,
#: and hex ids must not be mistaken for numbers by a detector).
SKIP_KEYS: Final = frozenset({
    "event_id", "trace_id", "span_id", "parent_span_id", "segment_id", "timestamp",
    "start_timestamp", "received", "sdk", "modules", "debug_meta", "platform", "level",
    "release", "dist", "environment", "_meta", "op", "status", "origin", "sample_rate",
    "lineno", "colno", "in_app", "instruction_addr",
})
WITHHELD: Final = "[piimw: event withheld: scrubbing failed]"

T = TypeVar("T")


def scrub_event_tree(tree: T, *, sink: Sink = "error") -> T:
    """A scrubbed copy of a serialized Sentry payload (dicts, lists and scalars)."""
    ctx = ScrubContext.current(sink, location="sentry")
    try:
        return cast(T, _walk(tree, ctx))
    finally:
        ctx.flush()


def _walk(value: Any, ctx: ScrubContext, depth: int = 0) -> Any:
    if depth < 64 and isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if k in SKIP_KEYS:
                out[k] = v
                continue
            nk = ctx.text(k) if isinstance(k, str) else k
            out[nk] = _walk(v, ctx, depth + 1)
        return out
    if depth < 64 and isinstance(value, (list, tuple)):
        return [_walk(v, ctx, depth + 1) for v in value]
    new: Any = ctx.data(value)
    return repr(new) if isinstance(new, ScrubbedProxy) else new


def _withheld(event: Any) -> Any:
    """Fail closed: what survives a scrubbing failure is the event's shape, not its data."""
    safe: dict[str, Any] = {k: event[k] for k in ("event_id", "timestamp", "level", "platform",
                                                   "sdk", "release", "environment", "type")
                            if isinstance(event, dict) and k in event}
    safe["message"] = WITHHELD
    exc = event.get("exception") if isinstance(event, dict) else None
    values = exc.get("values") if isinstance(exc, dict) else None
    if isinstance(values, list):
        safe["exception"] = {"values": [
            {"type": v.get("type"), "module": v.get("module"), "value": PLACEHOLDER}
            for v in values if isinstance(v, dict)]}
    safe.setdefault("tags", {})["piimw"] = "withheld"
    return safe


def before_send(event: Event, hint: Hint) -> Event | None:
    """``before_send``: scrub an error event for sink ``error``."""
    try:
        return scrub_event_tree(event)
    except Exception:
        return cast("Event", _withheld(event))


def before_send_transaction(event: Event, hint: Hint) -> Event | None:
    """``before_send_transaction``: span descriptions and data, request, contexts, tags."""
    try:
        return scrub_event_tree(event)
    except Exception:
        return None  # a transaction is telemetry: dropping it loses nothing a user needs


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """``before_breadcrumb``: log messages and HTTP/SQL breadcrumbs, scrubbed when recorded."""
    try:
        return scrub_event_tree(crumb, sink="log")
    except Exception:
        return None


def before_send_log(log: Any, hint: Any) -> Any:
    """``before_send_log`` (Sentry Logs): body and attributes."""
    try:
        return scrub_event_tree(log, sink="log")
    except Exception:
        return None


def before_send_metric(metric: Any, hint: Any) -> Any:
    """``before_send_metric``: attributes may carry user data."""
    try:
        return scrub_event_tree(metric, sink="log")
    except Exception:
        return None


_HOOKS: Final[tuple[tuple[str, Callable[[Any, Any], Any]], ...]] = (
    ("before_send", before_send),
    ("before_send_transaction", before_send_transaction),
    ("before_breadcrumb", before_breadcrumb),
    ("before_send_log", before_send_log),
    ("before_send_metric", before_send_metric),
)


def _chain(first: Callable[[Any, Any], Any] | None,
           ours: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Ours runs last, so whatever another hook adds is scrubbed too."""
    if first is None:
        return ours

    def chained(item: Any, hint: Any) -> Any:
        item = first(item, hint)
        if item is None:
            return None
        return ours(item, hint)

    chained._piimw = True  # type: ignore[attr-defined]
    return chained


def install_hooks(options: dict[str, Any]) -> None:
    """Chain piimw's hooks into a client's options (idempotent)."""
    experiments = options.get("_experiments")
    for key, ours in _HOOKS:
        existing = options.get(key)
        if existing is None and isinstance(experiments, dict):
            existing = experiments.get(key)
        if existing is ours or getattr(existing, "_piimw", False):
            continue
        options[key] = _chain(existing, ours)


def _processor(event: Event, hint: Hint) -> Event | None:
    """Global event processor: makes sure the current client runs piimw's hooks.

    Integrations are set up once per process, so a second ``sentry_sdk.init`` would otherwise
    run without them. The hooks read the options after the processors, so this event is covered.
    """
    client = sentry_sdk.get_client()
    if client.get_integration(PIIIntegration) is not None:
        install_hooks(client.options)
    return event


class PIIIntegration(Integration):
    """Scrubs every event, transaction, breadcrumb, log and metric by value (see module doc)."""

    identifier = "piimw"

    @staticmethod
    def setup_once() -> None:
        add_global_event_processor(_processor)

    def setup_once_with_options(self, options: dict[str, Any] | None = None) -> None:
        if options is not None:
            install_hooks(options)
