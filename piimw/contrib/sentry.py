"""Sentry: value-scrub every event, transaction, span, breadcrumb and log before it leaves.

Sentry's own scrubbing is by key name (``password``, ``authorization``...) and shallow; PII in
exception messages, frame variables, log messages, request bodies, span descriptions (SQL with
literals, URLs with query strings) passes it. Here the whole serialized event tree is walked and
every string is checked against the detectors and the current request's known values, with the
policy for sink ``error`` deciding the replacement. Only the payload's own metadata (ids,
timestamps, SDK info at the top, ids in trace contexts and spans, frame line numbers) is left
as is, by position: the same key names elsewhere (a local called ``status``, an ``extra``
called ``level``) hold user data and are scrubbed.

Either add the integration (it chains the hooks after any you configured)::

    sentry_sdk.init(dsn=..., integrations=[PIIIntegration()])

or pass the functions yourself: ``before_send=before_send``, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

try:
    import sentry_sdk
    import sentry_sdk.tracing_utils
    from sentry_sdk.consts import DEFAULT_OPTIONS
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
    "before_send_span",
    "before_send_transaction",
    "scrub_event_tree",
]

#: Top-level keys of a payload (event, transaction, breadcrumb, log, metric, streamed span)
#: whose values are identifiers, timestamps or SDK metadata: skipped (they are not PII, and hex
#: ids must not be mistaken for numbers by a detector). Only at the top: deeper down the same
#: names are user data (frame locals, ``extra``, contexts, request bodies, attributes).
SKIP_KEYS: Final = frozenset({
    "event_id", "trace_id", "span_id", "parent_span_id", "segment_id", "timestamp",
    "start_timestamp", "end_timestamp", "received", "sdk", "modules", "debug_meta",
    "platform", "level", "release", "dist", "environment", "_meta", "op", "status", "origin",
    "sample_rate",
})
WITHHELD: Final = "[piimw: event withheld: scrubbing failed]"
SPAN_WITHHELD: Final = "[piimw: span withheld: scrubbing failed]"


@dataclass(frozen=True)
class _Meta:
    """Where a payload keeps SDK metadata: keys left as they are here, and such places below.

    A list passes its place on to its items (``spans``, ``values``); any key not named in
    ``under`` leads to plain user data, where nothing is skipped.
    """

    keep: frozenset[str] = frozenset()
    under: Mapping[str, _Meta] = field(default_factory=dict)


_USER_DATA: Final = _Meta()
#: A span's ids and timestamps (a transaction's ``spans`` and ``contexts.trace``).
_SPAN: Final = _Meta(frozenset({"trace_id", "span_id", "parent_span_id", "segment_id",
                                "timestamp", "start_timestamp"}))
_FRAMES: Final = _Meta(under={"frames": _Meta(frozenset({
    "lineno", "colno", "in_app", "instruction_addr"}))})
_STACKS: Final = _Meta(under={"values": _Meta(under={"stacktrace": _FRAMES})})
#: Span, log and metric attributes holding hex ids.
_ID_ATTRIBUTES: Final = frozenset({
    "sentry.segment.id", "sentry.profiler_id", "sentry.trace.parent_span_id"})
#: Attributes a withheld span keeps: ids and SDK info, set by the SDK, never user data.
_SPAN_SHAPE_ATTRIBUTES: Final = _ID_ATTRIBUTES | {
    "sentry.sdk.name", "sentry.sdk.version", "sentry.release", "sentry.environment"}
_PAYLOAD: Final = _Meta(SKIP_KEYS, {
    "contexts": _Meta(under={"trace": _SPAN}),
    "spans": _SPAN,
    "exception": _STACKS,
    "threads": _STACKS,
    "stacktrace": _FRAMES,
    "breadcrumbs": _Meta(under={"values": _Meta(frozenset({"timestamp", "level"}))}),
    "attributes": _Meta(_ID_ATTRIBUTES),
})

T = TypeVar("T")


def scrub_event_tree(tree: T, *, sink: Sink = "error") -> T:
    """A scrubbed copy of a serialized Sentry payload (dicts, lists and scalars)."""
    ctx = ScrubContext.current(sink, location="sentry")
    try:
        return cast(T, _walk(tree, ctx, _PAYLOAD))
    finally:
        ctx.flush()


def _walk(value: Any, ctx: ScrubContext, meta: _Meta, depth: int = 0) -> Any:
    if depth < 64 and isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if k in meta.keep:
                out[k] = v
                continue
            nk = ctx.text(k) if isinstance(k, str) else k
            out[nk] = _walk(v, ctx, meta.under.get(k, _USER_DATA), depth + 1)
        return out
    if depth < 64 and isinstance(value, (list, tuple)):
        return [_walk(v, ctx, meta, depth + 1) for v in value]
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


def _withheld_span(span: Any) -> dict[str, Any]:
    """Fail closed: a span's ids and SDK info survive a scrubbing failure, its data does not."""
    safe: dict[str, Any] = {k: span[k] for k in ("trace_id", "span_id", "parent_span_id",
                                                  "status", "is_segment", "start_timestamp",
                                                  "end_timestamp")
                            if isinstance(span, dict) and k in span}
    attrs = span.get("attributes") if isinstance(span, dict) else None
    safe["name"] = SPAN_WITHHELD
    safe["attributes"] = ({k: v for k, v in attrs.items() if k in _SPAN_SHAPE_ATTRIBUTES}
                          if isinstance(attrs, dict) else {})
    safe["attributes"]["piimw"] = "withheld"
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


def before_send_span(span: Any, hint: Any) -> Any:
    """``before_send_span`` (``trace_lifecycle="stream"``): span name and attributes.

    Never ``None``: a streamed span cannot be dropped, the SDK would send the original.
    """
    try:
        out = scrub_event_tree(span)
    except Exception:
        return _withheld_span(span)
    return out if isinstance(out, dict) and "name" in out else _withheld_span(span)


_HOOKS: Final[tuple[tuple[str, Callable[[Any, Any], Any]], ...]] = (
    ("before_send", before_send),
    ("before_send_transaction", before_send_transaction),
    ("before_breadcrumb", before_breadcrumb),
    ("before_send_log", before_send_log),
    ("before_send_metric", before_send_metric),
    ("before_send_span", before_send_span),
)
#: Hooks whose item the SDK keeps when they fail or return nothing usable.
_UNDROPPABLE: Final = frozenset({"before_send_span"})
#: Whether this SDK streams spans (``trace_lifecycle="stream"``); older ones have no span hook.
_SDK_STREAMS_SPANS: bool = hasattr(sentry_sdk.tracing_utils, "has_span_streaming_enabled")


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


def _chain_undroppable(first: Callable[[Any, Any], Any] | None,
                       ours: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Like :func:`_chain`, for items the SDK keeps as they were when a hook fails or returns
    ``None`` (streamed spans): then ours scrubs that original instead, so it never goes out raw.
    """
    if first is None:
        return ours

    def chained(item: Any, hint: Any) -> Any:
        try:
            out = first(item, hint)
        except Exception:
            out = None
        if not (isinstance(out, dict) and "name" in out):
            out = item
        return ours(out, hint)

    chained._piimw = True  # type: ignore[attr-defined]
    return chained


def install_hooks(options: dict[str, Any]) -> None:
    """Chain piimw's hooks into a client's options (idempotent)."""
    for key, ours in _HOOKS:
        if key == "before_send_span" and not _SDK_STREAMS_SPANS:
            continue  # an SDK that cannot stream spans has nothing to send through it
        experiments = options.get("_experiments")
        existing = options.get(key)
        if existing is None and isinstance(experiments, dict):
            existing = experiments.get(key)
        if existing is ours or getattr(existing, "_piimw", False):
            continue
        chain = _chain_undroppable if key in _UNDROPPABLE else _chain
        if key in DEFAULT_OPTIONS or not isinstance(experiments, dict):
            options[key] = chain(existing, ours)
        else:  # an SDK that reads this hook from ``_experiments`` only; a copy, since the
            # default ``_experiments`` dict is shared by every client
            options["_experiments"] = {**experiments, key: chain(existing, ours)}


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
    """Scrubs every event, transaction, streamed span, breadcrumb, log and metric by value."""

    identifier = "piimw"

    @staticmethod
    def setup_once() -> None:
        add_global_event_processor(_processor)

    def setup_once_with_options(self, options: dict[str, Any] | None = None) -> None:
        if options is not None:
            install_hooks(options)
