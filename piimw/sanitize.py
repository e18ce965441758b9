"""Value-based scrubbing of exceptions, frame locals and arbitrary Python data.

Key-name denylists miss PII that travels inside exception messages (``f"bad email {email}"``),
database diagnostics (``DETAIL: Key (email)=(...) already exists``), ``str()`` of validation
errors, chained and grouped exceptions, notes and frame locals. Here every string is checked
against the detectors and the current request's known values, and the policy for the sink
(``error`` by default, ``log`` from the log filter) decides what replaces a match.

What is guaranteed after :func:`sanitize_exception`: ``str(exc)``, ``repr(exc)`` and
``traceback.format_exception(exc)`` show no known value and no detected PII, for every
exception reachable through ``__cause__``, ``__context__`` and exception groups. What is not:
attributes holding arbitrary objects (an HTTP client's request, a database driver's C-level
diagnostics such as psycopg's ``diag``) are left alone because they are not part of those
renderings and replacing them would break code that reads them; frame locals cannot be changed
at all, so :func:`scrubbed_locals` returns scrubbed copies for reporters to show instead.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import traceback
import types
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from piimw.api import default_config
from piimw.consent import DEFAULT, Consent
from piimw.detect import KnownValues, Span, find_all, merge_spans, redact
from piimw.exchange import current
from piimw.findings import Action, Finding, Sink
from piimw.transform import DROP, mask_string, redact_token

if TYPE_CHECKING:
    from piimw.config import Config
    from piimw.exchange import Exchange

__all__ = [
    "PLACEHOLDER",
    "FrameLocals",
    "ScrubContext",
    "ScrubbedException",
    "ScrubbedProxy",
    "format_exception",
    "on_app_exception",
    "safe_repr",
    "safe_str",
    "sanitize_exception",
    "scrub_data",
    "scrubbed_locals",
]

#: Written where a value cannot be shown safely. Names no value, only that one was withheld.
PLACEHOLDER: Final = "[piimw: withheld]"
MAX_DEPTH: Final = 32
#: Longer chains are cut here: a pathological graph must not make error reporting hang.
MAX_EXCEPTIONS: Final = 1000
#: A repr longer than this is not checked character by character; it is withheld.
MAX_REPR: Final = 1 << 16
#: Findings handed to the exchange per scrubbing context.
MAX_FINDINGS: Final = 1000

_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)
if _GROUP is None:  # pragma: no cover - Python 3.10 with the backport only
    try:
        from exceptiongroup import (  # type: ignore[no-redef,import-not-found,unused-ignore]
            BaseExceptionGroup as _GROUP,
        )
    except ImportError:
        _GROUP = None

#: Chain and identity slots, handled by the graph walk rather than as data.
_STRUCTURAL: Final = frozenset({
    "__dict__", "__weakref__", "args", "__traceback__", "__context__", "__cause__",
    "__suppress_context__", "message", "exceptions", "__notes__",
})
_MISSING: Final = object()


def _is_group(exc: BaseException) -> bool:
    return _GROUP is not None and isinstance(exc, _GROUP)


def safe_str(obj: object) -> str:
    """``str(obj)``, or a fixed text where it raises (a rendering must never fail a scrub)."""
    try:
        return str(obj)
    except Exception:
        return "<exception str() failed>"  # what traceback prints in the same case


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or a fixed text naming the type where it raises."""
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__name__} object: repr() failed>"


def _multi_items(value: Mapping[Any, Any]) -> list[tuple[Any, list[Any]]] | None:
    """Every value of each key, for the multi-value dicts of Django (``lists``), werkzeug
    (``lists``) and Starlette (``multi_items``), or any with ``getlist``; None otherwise."""
    try:
        lists = getattr(value, "lists", None)
        if callable(lists):
            return [(k, list(vs)) for k, vs in lists()]
        multi_items = getattr(value, "multi_items", None)
        if callable(multi_items):
            grouped: dict[Any, list[Any]] = {}
            for k, v in multi_items():
                grouped.setdefault(k, []).append(v)
            return list(grouped.items())
        getlist = getattr(value, "getlist", None)
        if callable(getlist):
            return [(k, list(getlist(k))) for k in list(value.keys())]
    except Exception:
        return None  # not the API we took it for: items() and the renderings are checked
    return None


#: A percent-encoded path segment (uvicorn quotes the path of the access line it writes),
#: wherever it is in the text (a log line or an extra may hold several URLs), or a word that
#: is one encoded value (``4242%204242%204242%204242``).
_PATH_SEGMENT: Final = re.compile(r"(^|[/\s])([^/?#\s]*%[0-9A-Fa-f]{2}[^/?#\s]*)")
#: A query value (``+`` or ``%``-encoded): of a bare query string, of a URL's query, or of
#: its fragment (``#card=...``, where single-page apps and OAuth put their parameters).
_QUERY_VALUE: Final = re.compile(r"((?:^|[?&#])[^=&\s#]*=)([^&\s#]*[%+][^&\s#]*)")
#: What a decoded part is written back with unencoded: nothing that ends a segment or a
#: value, no space or control character (a decoded ``%0A`` would forge a log line).
_SAFE: Final = "[]:@!$'()*,;=~/"
#: Decoding rounds: a URL inside a query value (``next=``) is encoded twice.
_DECODINGS: Final = 3


#: A run of percent escapes (``unquote`` splits the whole text at every ``%``: slow on many).
_ESCAPES: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _unquote(text: str) -> str:
    """``urllib.parse.unquote``, in time linear in the escapes (a value of a few hundred
    thousand bare ``%`` took it a second)."""
    if "%" not in text:
        return text
    return _ESCAPES.sub(lambda m: bytes.fromhex(m.group().replace("%", "")).decode(
        "utf-8", "replace"), text)


def _unquote_plus(text: str) -> str:
    return _unquote(text.replace("+", " "))


def _fully_decoded(encoded: str, decode: Callable[[str], str]) -> str:
    """``encoded`` decoded until it no longer changes (at most :data:`_DECODINGS` times)."""
    text = decode(encoded)
    for _ in range(_DECODINGS - 1):
        again = _unquote(text)
        if again == text:
            break
        text = again
    return text


def url_decodings(text: str) -> str:
    """``text`` read decoded, ``+`` kept and ``+`` as a space, one reading a line ("" when
    nothing decodes): where :meth:`ScrubContext.url_decoded` looks, in one scan of the whole
    text (the log filter's fast path; clean text with many escapes)."""
    if "%" not in text and ("+" not in text or "=" not in text):
        return ""
    plain = _fully_decoded(text, _unquote)
    spaced = _fully_decoded(text, _unquote_plus) if "+" in text else plain
    if spaced == text:
        return ""
    return spaced if plain in (spaced, text) else f"{plain}\n{spaced}"


class ScrubContext:
    """One scrubbing pass: the policy inputs (sink, uses, consent, route), the values to look
    for (detectors, the request's known values) and the findings made on the way.

    Built per call from the current exchange, so log filters and reporters need no wiring.
    ``extra_known`` adds values an adapter harvested itself (e.g. Django's ``request.POST``
    when no exchange is active).
    """

    __slots__ = ("_active", "_copying", "_exc_memo", "consent", "detectors", "event_type",
                 "exchange", "extra_known", "findings", "hasher", "known", "location", "policy",
                 "route", "scrubber", "sink", "uses")

    def __init__(
        self,
        *,
        sink: Sink = "log",
        exchange: Exchange | None = None,
        config: Config | None = None,
        consent: Consent | None = None,
        uses: Sequence[str] = ("essential",),
        event_type: str | None = None,
        extra_known: KnownValues | None = None,
        location: str = "text",
    ) -> None:
        if config is None:
            config = exchange.config if exchange is not None else default_config()
        scrubber = config.scrubber
        self.scrubber = scrubber
        self.exchange = exchange
        self.sink: Sink = sink
        self.uses = tuple(uses)
        self.event_type = event_type
        self.policy = scrubber.policy
        self.detectors = scrubber.detectors
        self.hasher = scrubber.hasher
        self.consent = consent if consent is not None else (
            exchange.consent if exchange is not None else DEFAULT)
        self.route = exchange.route_template if exchange is not None else None
        known = exchange.known if exchange is not None else None
        self.known = known if known else None
        self.extra_known = extra_known if extra_known else None
        self.location = location
        self.findings: list[Finding] = []
        self._active: set[int] = set()
        self._exc_memo: dict[int, BaseException] = {}
        self._copying = False

    @classmethod
    def current(cls, sink: Sink = "log", **kwargs: Any) -> ScrubContext:
        """A context for the request being handled here (detectors alone outside requests)."""
        kwargs.setdefault("exchange", current())
        return cls(sink=sink, **kwargs)

    # -- text -----------------------------------------------------------------------------
    def hit(self, text: str) -> bool:
        """Cheap check: does ``text`` hold anything to scrub?"""
        if self.detectors.search(text):
            return True
        if self.known is not None and self.known.search(text):
            return True
        return self.extra_known is not None and self.extra_known.search(text)

    def spans(self, text: str) -> list[Span]:
        spans: list[Span] = find_all(text, self.detectors, self.known)
        if self.extra_known is not None:
            more = self.extra_known.find(text)
            if more:
                spans = merge_spans([*spans, *more])
        return spans

    def decide(self, span: Span, *, record: bool = True) -> Action:
        d = self.policy.decide(span.category, self.uses, self.sink, self.consent,
                               route=self.route, event_type=self.event_type, declared=False)
        if record:
            self.findings.append(Finding(self.location, span.category, d.action, self.sink,
                                         span.detector, "", d.rule, d.reason))
        return d.action

    def changes(self, text: str) -> bool:
        """Would :meth:`text` change ``text``? (Policy may allow what the detectors find.)"""
        if not text:
            return False
        return any(self.decide(s, record=False) != "allow" for s in self.spans(text))

    def _replacement(self, action: Action, matched: str, category: str) -> str:
        """Inside free text a value can only be replaced, never dropped: drop means redact."""
        if action == "allow":
            return matched
        if action == "mask":
            return mask_string(matched, category)
        if action == "hash" and self.hasher is not None:
            return self.hasher.pseudonym(matched, self.sink)
        return redact_token(category)

    def text(self, text: str) -> str:
        """``text`` with every detected or known value treated by policy."""
        if not text:
            return text
        spans = self.spans(text)  # on clean text as cheap as a search: no pre-check
        if not spans:
            return text

        def replace(span: Span, matched: str) -> str:
            return self._replacement(self.decide(span), matched, span.category)

        out: str = redact(text, spans, replace)
        return text if out == text else out

    def url_decoded(self, text: str) -> str:
        """``text`` (already scrubbed) with its encoded path segments and query values read
        decoded: ``4242%204242%204242%204242`` and ``card=4242+4242+4242+4242`` hide the
        number's shape from the detectors (the request's known values find it, but an access
        line written after the request, or an event's URL, has none). One that holds personal
        data is scrubbed and written encoded again (a decoded ``%0A`` would forge a line);
        any other is left as it was. In a path ``+`` is itself; in a query it is a space."""
        decoded = url_decodings(text)
        if not decoded or not self.hit(decoded):  # one scan for the common, clean case
            return text
        out = _PATH_SEGMENT.sub(lambda m: self._decoded(m, _unquote), text)
        out = _QUERY_VALUE.sub(lambda m: self._decoded(m, _unquote_plus), out)
        return text if out == text else out

    def text_and_urls(self, text: str) -> str:
        """:meth:`text`, then :meth:`url_decoded`: free text whose URLs may hide a value
        percent-encoded (a log message, a query value holding a page URL, a report's request
        URL). ``text`` itself when clean."""
        return self.url_decoded(self.text(text))

    def _decoded(self, m: re.Match[str], decode: Callable[[str], str]) -> str:
        decoded = _fully_decoded(m.group(2), decode)
        scrubbed = self.text(decoded)
        return m.group(0) if scrubbed == decoded else m.group(1) + quote(scrubbed, safe=_SAFE)

    def _leaf(self, text: str) -> Any:
        """A whole string value: like :meth:`text`, but ``drop`` on the whole value drops it.
        A URL's encoded parts are read decoded (:meth:`url_decoded`)."""
        if not text:
            return text
        spans = self.spans(text)
        if not spans:
            return self.url_decoded(text)
        actions = {id(s): self.decide(s) for s in spans}
        if len(spans) == 1 and actions[id(spans[0])] == "drop" and \
                text[:spans[0].start].strip() == "" and text[spans[0].end:].strip() == "":
            return DROP
        out: str = redact(text, spans,
                          lambda s, m: self._replacement(actions[id(s)], m, s.category))
        return text if out == text else self.url_decoded(out)

    # -- data -----------------------------------------------------------------------------
    def data(self, value: Any, *, render: bool = True) -> Any:
        """A scrubbed copy of ``value``; unchanged parts keep their identity.

        ``render``: objects whose ``str()`` or ``repr()`` shows PII are replaced by a
        :class:`ScrubbedProxy` (what logs and event payloads need). Without it they are kept
        (exception attributes: code may still read them, and renderings are checked apart).
        """
        out = self._value(value, render, 0)
        return None if out is DROP else out

    def _value(self, value: Any, render: bool, depth: int) -> Any:
        if isinstance(value, str):
            return self._leaf(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            if isinstance(value, int) and value.bit_length() > 256:
                return value  # no identifier is that long (and str() may refuse it)
            s = str(value)
            t = self.text(s)
            return value if t == s else t
        if isinstance(value, (bytes, bytearray)):
            return self._bytes(value)
        if isinstance(value, BaseException):
            return self.exception(value, copy=render or self._copying)
        if isinstance(value, ScrubbedProxy):
            return value
        if depth >= MAX_DEPTH:
            return PLACEHOLDER if render else value
        key = id(value)
        if key in self._active:  # a cycle back to a container being copied
            return PLACEHOLDER if render else value
        if isinstance(value, Mapping):
            self._active.add(key)
            try:
                return self._mapping(value, render, depth)
            finally:
                self._active.discard(key)
        if isinstance(value, (list, tuple, set, frozenset, deque)):
            self._active.add(key)
            try:
                return self._sequence(value, render, depth)
            finally:
                self._active.discard(key)
        if not render:
            return value
        return self._object(value, depth)

    def _bytes(self, value: bytes | bytearray) -> Any:
        text = bytes(value).decode("utf-8", "surrogateescape")
        new = self.text(text)
        if new is text:
            return value
        raw = new.encode("utf-8", "surrogateescape")
        return bytearray(raw) if isinstance(value, bytearray) else raw

    def _mapping(self, value: Mapping[Any, Any], render: bool, depth: int) -> Any:
        """Every key is checked too; a mapping that is not a plain dict may show more than
        ``items()`` yields (a ``QueryDict``'s repr shows every value of a key), so all its
        values are checked, or its renderings where it has no multi-value API."""
        exact = type(value) is dict
        multi = None if exact else _multi_items(value)
        if multi is not None:
            return self._multi(value, multi, render, depth)
        changed = False
        items: list[tuple[Any, Any]] = []
        for k, v in list(value.items()):
            nk = self._value(k, render, depth + 1) if isinstance(k, (str, bytes)) \
                else self._key(k, render, depth)
            nv = self._value(v, render, depth + 1)
            if nk is not k or nv is not v:
                changed = True
            if nv is DROP or nk is DROP:
                continue
            items.append((nk, nv))
        if changed:
            return dict(items)
        return value if exact or not render else self._object(value, depth)

    def _key(self, key: Any, render: bool, depth: int) -> Any:
        """A key that is not a string (an int, a tuple): its scrubbed text where it changes."""
        new = self._value(key, render, depth + 1)
        if new is key:
            return key
        return new if isinstance(new, str) else self.text(safe_str(new))

    def _multi(self, value: Mapping[Any, Any], multi: list[tuple[Any, list[Any]]],
               render: bool, depth: int) -> Any:
        """A multi-value mapping: unchanged, or a plain dict of scrubbed value lists."""
        changed = False
        out: dict[Any, list[Any]] = {}
        for k, vs in multi:
            nk = self._value(k, render, depth + 1) if isinstance(k, (str, bytes)) \
                else self._key(k, render, depth)
            nvs = [self._value(v, render, depth + 1) for v in vs]
            if nk is not k or any(a is not b for a, b in zip(nvs, vs, strict=True)):
                changed = True
            if nk is not DROP:
                out.setdefault(nk, []).extend(v for v in nvs if v is not DROP)
        return out if changed else value

    def _sequence(self, value: Any, render: bool, depth: int) -> Any:
        changed = False
        raw: list[Any] = []
        for v in list(value):
            nv = self._value(v, render, depth + 1)
            if nv is not v:
                changed = True
            raw.append(nv)
        if not changed:
            return value
        if isinstance(value, tuple):  # positions matter (format arguments): a drop leaves None
            fields = [None if i is DROP else i for i in raw]
            if hasattr(value, "_fields"):  # a namedtuple keeps its type
                try:
                    shaped: Any = type(value)
                    return shaped(*fields)
                except Exception:
                    return tuple(fields)
            return tuple(fields)
        items = [i for i in raw if i is not DROP]
        if isinstance(value, deque):
            return deque(items, maxlen=value.maxlen)
        if isinstance(value, frozenset):
            return frozenset(items)
        if isinstance(value, set):
            return set(items)
        return items

    def _object(self, value: Any, depth: int) -> Any:
        r = safe_repr(value)
        s = safe_str(value)
        if len(r) > MAX_REPR or len(s) > MAX_REPR:
            return ScrubbedProxy(value, f"<{type(value).__name__}: {PLACEHOLDER}>")
        if self.changes(r) or self.changes(s) or self._hook_shows(value, depth) \
                or self._fields_show(value, depth):
            return ScrubbedProxy(value, self.text(s), self.text(r))
        return value

    def _fields_show(self, value: Any, depth: int) -> bool:
        """Does a dataclass hold something to scrub in its fields? JSON encoders write every
        field (``dataclasses.asdict``: python-json-logger, orjson), ``repr=False`` ones too,
        which the repr hides: those are often the sensitive ones."""
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return False
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        return self._rendered_changes(value, fields, depth)

    def _rendered_changes(self, value: Any, rendered: Any, depth: int) -> bool:
        """Does ``rendered`` (what a renderer shows for ``value``) hold something to scrub?
        ``value`` counts as being walked: a rendering that contains it is a cycle, withheld."""
        key = id(value)
        added = key not in self._active
        self._active.add(key)
        try:
            return self._value(rendered, True, depth + 1) is not rendered
        finally:
            if added:
                self._active.discard(key)

    def _hook_shows(self, value: Any, depth: int) -> bool:
        """Does ``__structlog__`` (what structlog's ``JSONRenderer`` shows instead of the
        repr) return something to scrub? The proxy does not forward it."""
        if not callable(getattr(type(value), "__structlog__", None)):
            return False
        try:
            rendered = value.__structlog__()
        except Exception:
            return False  # JSONRenderer fails on it as well: nothing is shown
        return self._rendered_changes(value, rendered, depth)

    # -- exceptions -----------------------------------------------------------------------
    def exception(self, exc: BaseException, *, copy: bool = False) -> BaseException:
        """Sanitize the graph of ``exc``; see :func:`sanitize_exception`."""
        hit = self._exc_memo.get(id(exc))
        if hit is not None:
            return hit
        nodes = _graph(exc)
        previous = self._copying
        self._copying = copy
        try:
            return self._copy_graph(exc, nodes) if copy else self._in_place(exc, nodes)
        finally:
            self._copying = previous

    def _in_place(self, exc: BaseException, nodes: list[BaseException]) -> BaseException:
        for node in nodes:
            self._exc_memo[id(node)] = node
        failed = False
        for node in nodes:
            self._clean(node)
            failed = not self._finish(node) or failed
        _cut(nodes)
        if failed:
            for node in nodes:
                del self._exc_memo[id(node)]
            self._copying = True
            return self._copy_graph(exc, nodes)
        return exc

    def _copy_graph(self, root: BaseException, nodes: list[BaseException]) -> BaseException:
        memo = self._exc_memo
        for node in nodes:
            # members of a group first: the group copy is built from their final copies
            stack: list[tuple[BaseException, bool]] = [(node, False)]
            while stack:
                e, expanded = stack.pop()
                if id(e) in memo:
                    continue
                if _is_group(e) and not expanded:
                    stack.append((e, True))
                    stack.extend((m, False) for m in e.exceptions if id(m) not in memo)  # type: ignore[attr-defined]
                    continue
                c = self._copy(e)
                memo[id(e)] = c
                self._clean(c)
                if not self._finish(c):
                    memo[id(e)] = _stand_in(c, self)
        for node in nodes:
            c = memo[id(node)]
            _rewire(node, c, memo)
        return memo[id(root)]

    def _copy(self, e: BaseException) -> BaseException:
        cls = type(e)
        try:
            if _is_group(e):
                members = [self._exc_memo[id(m)] for m in e.exceptions]  # type: ignore[attr-defined]
                msg = self.text(safe_str(e.message))  # type: ignore[attr-defined]
                c: BaseException = _GROUP.__new__(cls, msg, members)
            else:
                try:
                    c = cls.__new__(cls, *e.args)
                except TypeError:  # a __new__ with its own signature: skip it
                    c = BaseException.__new__(cls)
                c.args = e.args
        except Exception:
            return _stand_in(e, self)
        if type(c) is not cls:
            return _stand_in(e, self)
        own = getattr(e, "__dict__", None)
        for name, value in _attributes(e):
            if not (isinstance(own, dict) and name in own) and \
                    getattr(c, name, _MISSING) is value:
                continue  # a C member the constructor set already (OSError: None != unset)
            with suppress(AttributeError, TypeError):
                setattr(c, name, value)
        notes = getattr(e, "__notes__", None)
        if notes is not None:
            c.__notes__ = notes  # type: ignore[attr-defined]
        return c

    def _clean(self, e: BaseException) -> None:
        """Replace, on ``e`` itself, every attribute that ``str()``/``repr()`` may show."""
        args = e.args
        new_args = self._value(args, False, 0)
        if new_args is not args:
            e.args = tuple(a if a is not DROP else PLACEHOLDER for a in new_args)
        for name, value in _attributes(e):
            new = self._value(value, False, 1)
            if new is value:
                continue
            with suppress(AttributeError, TypeError):
                setattr(e, name, PLACEHOLDER if new is DROP else new)
        notes = getattr(e, "__notes__", None)
        if isinstance(notes, str):  # a misuse tracebacks still print (by character, or whole)
            with suppress(AttributeError, TypeError):
                e.__notes__ = self.text(notes)  # type: ignore[attr-defined]
        elif isinstance(notes, (list, tuple)):
            new_notes = [self.text(n) if isinstance(n, str) else n for n in notes]
            if isinstance(notes, tuple) or any(
                    a is not b for a, b in zip(new_notes, notes, strict=True)):
                with suppress(AttributeError, TypeError):
                    e.__notes__ = new_notes  # type: ignore[attr-defined]

    def _finish(self, e: BaseException) -> bool:
        """Check what ``str``/``repr`` show now; pin clean renderings where they still leak."""
        s, r = safe_str(e), safe_repr(e)
        if not self.changes(s) and not self.changes(r) and not self._notes_leak(e):
            return True
        if _pin(e, self.text(s), self.text(r)):
            return not self._notes_leak(e)
        _blank(e)
        return not (self.changes(safe_str(e)) or self.changes(safe_repr(e))
                    or self._notes_leak(e))

    def _notes_leak(self, e: BaseException) -> bool:
        notes = getattr(e, "__notes__", None)
        if not notes:
            return False
        if isinstance(notes, (list, tuple)):
            return any(self.changes(safe_str(n)) for n in notes)
        # Anything else is printed as its repr, or item by item (a str: by character).
        return self.changes(safe_repr(notes)) or self.changes(safe_str(notes))

    # -- bookkeeping ----------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the findings (never values) to the exchange, for the audit record.

        At most :data:`MAX_FINDINGS` per context: a logging loop must not grow a request's
        state without bound.
        """
        ex = self.exchange
        findings, self.findings = self.findings, []
        if ex is None or not findings:
            return
        record = getattr(ex, "record", None) or getattr(ex, "_record", None)
        if record is not None:
            record(findings[:MAX_FINDINGS])


def _graph(root: BaseException) -> list[BaseException]:
    """Every exception reachable through causes, contexts and groups; iterative, cycle-safe."""
    order = [root]
    seen = {id(root)}
    i = 0
    while i < len(order) and len(order) < MAX_EXCEPTIONS:
        e = order[i]
        i += 1
        nxt: list[BaseException | None] = [e.__cause__, e.__context__]
        if _is_group(e):
            nxt.extend(e.exceptions)  # type: ignore[attr-defined]
        for n in nxt:
            if n is not None and id(n) not in seen:
                seen.add(id(n))
                order.append(n)
    return order


def _cut(nodes: list[BaseException]) -> None:
    """Drop chain links to exceptions past :data:`MAX_EXCEPTIONS` (never sanitized)."""
    if len(nodes) < MAX_EXCEPTIONS:
        return
    ids = {id(n) for n in nodes}
    for n in nodes:
        if n.__cause__ is not None and id(n.__cause__) not in ids:
            n.__cause__ = None
        if n.__context__ is not None and id(n.__context__) not in ids:
            n.__context__ = None


def _rewire(source: BaseException, copy: BaseException, memo: dict[int, BaseException]) -> None:
    cause, context = source.__cause__, source.__context__
    copy.__cause__ = memo.get(id(cause)) if cause is not None else None
    copy.__context__ = memo.get(id(context)) if context is not None else None
    copy.__suppress_context__ = source.__suppress_context__
    if copy.__traceback__ is None:
        copy.__traceback__ = source.__traceback__


def _attributes(e: BaseException) -> list[tuple[str, Any]]:
    """Instance data ``str()`` might read: ``__dict__`` plus C members and slots."""
    out: list[tuple[str, Any]] = []
    d = getattr(e, "__dict__", None)
    if isinstance(d, dict):
        out.extend((k, v) for k, v in list(d.items()) if k != "__notes__")
    seen = {k for k, _ in out}
    for klass in type(e).__mro__:
        if klass is BaseException or klass is object:
            continue
        for name, desc in vars(klass).items():
            if name in seen or name in _STRUCTURAL or not isinstance(
                    desc, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                continue
            seen.add(name)
            try:
                out.append((name, getattr(e, name)))
            except AttributeError:
                continue
    return out


def _pin(e: BaseException, text: str, rep: str) -> bool:
    """Give ``e`` fixed ``str``/``repr`` by moving it to a same-named subclass.

    The subclass keeps ``isinstance`` true and the qualified name traceback prints. Built-in
    static types (``ValueError``) refuse class assignment; for them :func:`_blank` applies.
    """
    cls = type(e)
    try:
        sub = type(cls.__name__, (cls,), {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__str__": lambda self: text,
            "__repr__": lambda self: rep,
            "__reduce__": lambda self: (ScrubbedException, (text,)),
            "_piimw_pinned": True,
        })
        e.__class__ = sub
    except Exception:
        return False
    return True


def _blank(e: BaseException) -> None:
    """Last resort for built-in types: what ``str`` reads is replaced by the placeholder."""
    e.args = (PLACEHOLDER,)
    for name in ("strerror", "filename", "filename2", "text", "msg", "reason", "object",
                 "name", "path"):
        if hasattr(e, name):
            with suppress(AttributeError, TypeError):
                setattr(e, name, b"" if name == "object" else None if name != "msg"
                        else PLACEHOLDER)


class ScrubbedException(Exception):
    """Stands in for an exception that could not be copied or cleaned in place.

    ``original_type`` is the qualified name of the class it replaces (a name, never a value).
    """

    def __init__(self, message: str = PLACEHOLDER, original_type: str = "") -> None:
        super().__init__(message)
        self.original_type = original_type


def _stand_in(e: BaseException, ctx: ScrubContext) -> BaseException:
    cls = type(e)
    text = ctx.text(safe_str(e))
    if ctx.changes(text):
        text = PLACEHOLDER
    s = ScrubbedException(text, f"{cls.__module__}.{cls.__qualname__}")
    s.__traceback__ = e.__traceback__
    return s


class ScrubbedProxy:
    """Shows a scrubbed ``str``/``repr`` of an object; plain attribute access reaches it.

    Used for log record extras such as Django's ``record.request``: formatters render the
    scrubbed text, while handlers that use the object (``AdminEmailHandler`` builds its report
    from ``record.request.META``) keep working. Whatever they read from it is theirs to scrub.
    """

    __slots__ = ("_piimw_obj", "_piimw_repr", "_piimw_str")

    def __init__(self, obj: Any, text: str, rep: str | None = None) -> None:
        object.__setattr__(self, "_piimw_obj", obj)
        object.__setattr__(self, "_piimw_str", text)
        object.__setattr__(self, "_piimw_repr", rep if rep is not None else text)

    def __str__(self) -> str:
        s: str = object.__getattribute__(self, "_piimw_str")
        return s

    def __repr__(self) -> str:
        r: str = object.__getattribute__(self, "_piimw_repr")
        return r

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __getattr__(self, name: str) -> Any:
        """Plain attributes only: dunders and render hooks (``__structlog__``, ``__dict__``,
        ``__html__``, ``__rich_repr__``, IPython's ``_repr_html_``) would show the raw object."""
        if (name.startswith("__") and name.endswith("__")) or name.startswith("_repr_"):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_piimw_obj"), name)

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        """Pickled and copied as its scrubbed text (``SocketHandler`` pickles record extras)."""
        return (str, (str(self),))


# -- public functions ---------------------------------------------------------------------
def _ctx(exchange: Exchange | None, sink: Sink) -> ScrubContext:
    if exchange is None:
        return ScrubContext.current(sink)
    return ScrubContext(sink=sink, exchange=exchange)


def sanitize_exception(exc: BaseException, *, exchange: Exchange | None = None,
                       sink: Sink = "error", copy: bool = False) -> BaseException:
    """Make ``exc`` and every exception chained or grouped with it safe to show.

    In place by default (args, message attributes, ``__notes__``; a same-named subclass pins
    ``str``/``repr`` where a class computes them from data we cannot reach). Use the return
    value: when in-place cleaning is impossible, a sanitized copy comes back instead.
    ``copy=True`` never touches ``exc`` (for an exception still being handled).
    """
    ctx = _ctx(exchange, sink)
    try:
        return ctx.exception(exc, copy=copy)
    finally:
        ctx.flush()


def format_exception(exc: BaseException, *, exchange: Exchange | None = None,
                     sink: Sink = "error") -> str:
    """The traceback text of ``exc``, from a sanitized copy and scrubbed once more."""
    ctx = _ctx(exchange, sink)
    try:
        clean = ctx.exception(exc, copy=True)
        text = "".join(traceback.format_exception(type(clean), clean, clean.__traceback__))
        return ctx.text(text)
    finally:
        ctx.flush()


def on_app_exception(exc: BaseException) -> BaseException:
    """Middleware hook for an exception escaping the app: sanitize it for sink ``error``.

    Never raises. Re-raise the returned exception (usually ``exc`` itself); if sanitizing
    fails, a :class:`ScrubbedException` carrying only the class name comes back.
    """
    try:
        return sanitize_exception(exc, sink="error")
    except Exception:
        cls = type(exc)
        stand_in = ScrubbedException(PLACEHOLDER, f"{cls.__module__}.{cls.__qualname__}")
        stand_in.__traceback__ = exc.__traceback__
        return stand_in


def scrub_data(value: Any, *, sink: Sink = "log", exchange: Exchange | None = None,
               uses: Sequence[str] = ("essential",), render: bool = True) -> Any:
    """A scrubbed copy of any Python data (dicts, lists, strings, exceptions, objects)."""
    ctx = _ctx(exchange, sink) if uses == ("essential",) else ScrubContext(
        sink=sink, exchange=exchange if exchange is not None else current(), uses=uses)
    try:
        return ctx.data(value, render=render)
    finally:
        ctx.flush()


@dataclasses.dataclass(frozen=True)
class FrameLocals:
    """One traceback frame as a reporter may show it: scrubbed ``repr`` of each local."""

    filename: str
    lineno: int
    function: str
    variables: dict[str, str]


def scrubbed_locals(tb: types.TracebackType | None, *, exchange: Exchange | None = None,
                    sink: Sink = "error", max_length: int = 1024) -> list[FrameLocals]:
    """Scrubbed copies of the locals of every frame in ``tb`` (frames cannot be changed).

    Each repr is scrubbed whole and only then cut to ``max_length``, so a cut never leaves
    half a value behind; reprs too long to check are withheld.
    """
    ctx = _ctx(exchange, sink)
    out: list[FrameLocals] = []
    try:
        while tb is not None:
            frame = tb.tb_frame
            variables: dict[str, str] = {}
            for name, value in list(frame.f_locals.items()):
                r = safe_repr(value)
                r = f"<{type(value).__name__}: {PLACEHOLDER}>" if len(r) > MAX_REPR \
                    else ctx.text(r)
                if len(r) > max_length:
                    r = r[:max_length] + "..."
                variables[ctx.text(str(name))] = r
            out.append(FrameLocals(frame.f_code.co_filename, tb.tb_lineno,
                                   frame.f_code.co_name, variables))
            tb = tb.tb_next
    finally:
        ctx.flush()
    return out

