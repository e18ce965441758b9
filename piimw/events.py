"""Analytics and third-party events: consent first, then scrubbing for sink ``event``.

:func:`scrub_event` is what an application calls before handing an event to an analytics
SDK; :class:`Outbound` is the sans-IO core of the HTTP client adapters
(:mod:`piimw.contrib.httpx`, :mod:`piimw.contrib.requests`), which apply the same decision to
request bodies sent to configured third-party hosts.
"""

from __future__ import annotations

import re
from codecs import lookup
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from unicodedata import normalize
from urllib.parse import parse_qsl, quote, unquote, urlencode

import orjson

from piimw.api import allows
from piimw.bodies import (
    MULTIPLE,
    TooLarge,
    content_coding,
    decode_content,
    dumps_exact,
    encode_content,
    forwards_what_was_read,
    loads_exact,
    may_lose_numbers,
)
from piimw.consent import Consent
from piimw.errors import PIIMWError
from piimw.exchange import current
from piimw.routes import base_media_type
from piimw.sanitize import ScrubContext
from piimw.taxonomy import resolve_use

if TYPE_CHECKING:
    from piimw.config import Config
    from piimw.plan import Plan

__all__ = ["BlockedEvent", "Outbound", "OutboundBody", "allows", "scrub_event"]

#: Bodies larger than this are not inspected; they are blocked (fail closed).
MAX_EVENT_BYTES: Final = 4 << 20


class BlockedEvent(PIIMWError):
    """An event (or an outbound request to a third party) was not sent.

    ``reason``: ``"consent"`` (the subject opted out of ``use``) or ``"uninspectable"`` (a body
    piimw cannot parse, so cannot clear). Names the use and the host, never a value.
    """

    def __init__(self, use: str, reason: str = "consent", *, host: str | None = None) -> None:
        self.use = use
        self.reason = reason
        self.host = host
        where = f" to {host}" if host else ""
        why = f"the subject opted out of {use!r}" if reason == "consent" else \
            f"the body cannot be inspected ({reason})"
        super().__init__(f"event{where} blocked: {why}")


def _context(use: str, event_type: str | None, consent: Consent | None,
             config: Config | None) -> ScrubContext:
    return ScrubContext(sink="event", exchange=current(), config=config, consent=consent,
                        uses=(use,), event_type=event_type, location="event")


def scrub_event(
    event: Mapping[str, Any],
    use: str = "analytics",
    *,
    event_type: str | None = None,
    plan: Plan | None = None,
    consent: Consent | None = None,
    config: Config | None = None,
) -> dict[str, Any] | None:
    """A copy of ``event`` fit to send for ``use``, or None when the subject opted out of it.

    Values the ``plan`` tags are decided by their tags; every other string is checked against
    the detectors and the current request's known values, and decided for ``use`` (so a rule
    may allow, mask or hash a category for one use only). Default: no raw PII.
    """
    use = resolve_use(use)
    ctx = _context(use, event_type, consent, config)
    if ctx.consent.opted_out_of(use) is not None:
        return None
    doc: Any = dict(event)
    if plan is not None:
        res = ctx.scrubber.scrub(doc, plan, sink="event", consent=ctx.consent, route=ctx.route,
                             event_type=event_type, known=ctx.known, detect=False)
        ctx.findings.extend(res.findings)
        doc = res.value if isinstance(res.value, dict) else {}
    out = ctx.data(doc)
    ctx.flush()
    return out if isinstance(out, dict) else {}


# -- outbound HTTP (sans-IO core of the client adapters) ----------------------------------
@dataclass(frozen=True)
class OutboundBody:
    """What to send instead: the path, query string and body (unchanged objects when clean)."""

    path: str
    query: str
    body: bytes
    changed: bool


#: Label separators IDNA reads as ``.`` (ideographic and fullwidth full stops).
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _host_key(host: str) -> str:
    """A host as compared: lowercase, no final dot, every label in Unicode. requests sends
    ``xn--bcher-kva.example`` where httpx names ``bücher.example``, and an ASCII key would not
    do: IDNA 2003 (Python's codec) writes ``straße`` as ``strasse``, IDNA 2008 (the ``idna``
    package both clients use) as ``xn--strae-oqa``."""
    h = normalize("NFC", host.translate(_DOTS).lower()).rstrip(".")
    return ".".join(map(_unicode_label, h.split("."))) if "xn--" in h else h


def _unicode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return normalize("NFC", label[4:].encode("ascii").decode("punycode").lower())
    except UnicodeError:  # not valid punycode: compared as written
        return label


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


class Outbound:
    """Which third-party hosts receive which use, and what may be sent to them.

    ``hosts`` maps a host name to the use its data serves (``{"api.segment.io": "analytics"}``);
    a key starting with ``.`` or ``*.`` covers subdomains. Hosts not listed pass untouched.
    """

    def __init__(self, hosts: Mapping[str, str]) -> None:
        exact: dict[str, str] = {}
        suffixes: list[tuple[str, str]] = []
        for host, use in hosts.items():
            h = host.strip()
            u = resolve_use(use)
            if h.startswith("*."):
                h = h[1:]
            if h.startswith("."):
                suffixes.append(("." + _host_key(h[1:]), u))
            else:
                exact[_host_key(h)] = u
        self._exact = exact
        self._suffixes = tuple(sorted(suffixes, key=lambda p: -len(p[0])))

    def use_for(self, host: str | None) -> str | None:
        if not host:
            return None
        h = _host_key(host)
        use = self._exact.get(h)
        if use is not None:
            return use
        for suffix, u in self._suffixes:
            if h.endswith(suffix) or h == suffix[1:]:
                return u
        return None

    def check(self, host: str, use: str) -> None:
        """Raise :class:`BlockedEvent` if the current subject opted out of ``use``."""
        if not allows(use):
            raise BlockedEvent(use, "consent", host=host)

    def scrub(self, host: str, use: str, *, path: str, query: str, content_type: str | None,
              content_encoding: str | None, body: bytes) -> OutboundBody:
        """Consent check, then the path segments, the query values and the body scrubbed for
        sink ``event`` (``path`` and ``query`` percent-encoded, as sent)."""
        self.check(host, use)
        ctx = _context(use, None, None, None)
        new_path = _scrub_path(path, ctx)
        new_query = _scrub_query(query, ctx)
        new_body = self._body(host, use, ctx, content_type, content_encoding, body)
        ctx.flush()
        changed = new_path is not path or new_query is not query or new_body is not body
        return OutboundBody(new_path, new_query, new_body, changed)

    def _body(self, host: str, use: str, ctx: ScrubContext, content_type: str | None,
              content_encoding: str | None, body: bytes) -> bytes:
        if not body:
            return body
        if len(body) > MAX_EVENT_BYTES:
            raise BlockedEvent(use, "too large", host=host)
        coding = content_coding([(b"content-encoding",
                                  (content_encoding or "").encode("latin-1", "replace"))])
        if coding not in (None, b"gzip", b"x-gzip"):
            label = coding.decode("latin-1") if coding != MULTIPLE else "with several codings"
            raise BlockedEvent(use, f"content-encoding {label}", host=host)
        try:
            raw = decode_content(body, coding, MAX_EVENT_BYTES)
        except TooLarge as e:
            raise BlockedEvent(use, "too large", host=host) from e
        except ValueError as e:  # several gzip members, or cut short: refused, never sent
            raise BlockedEvent(use, "bad gzip data", host=host) from e
        new = _scrub_payload(raw, content_type or "", ctx, use, host)
        if new is raw:
            return body
        return encode_content(new, coding)


def _charset(content_type: str) -> str | None:
    """The charset ``Content-Type`` names, None for none or UTF-8 (ASCII is a subset)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            label = value.strip().strip("\"'")
            try:
                codec = lookup(label).name
            except LookupError:
                return label  # decoding it fails: refused
            return None if codec in ("utf-8", "ascii") else codec
    return None


def _scrub_payload(raw: bytes, content_type: str, ctx: ScrubContext, use: str,
                   host: str) -> bytes:
    """The body read in the charset it declares (UTF-16 text is valid UTF-8 in which no
    detector sees a value), scrubbed, and written back in it."""
    media = base_media_type(content_type)
    charset = _charset(content_type)
    if charset is None:
        return _scrub_utf8(raw, media, ctx, use, host)
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeError) as e:
        raise BlockedEvent(use, "undecodable charset", host=host) from e
    utf8 = text.encode("utf-8", "surrogatepass")
    new = _scrub_utf8(utf8, media, ctx, use, host)
    try:
        out = raw if new is utf8 else new.decode("utf-8", "surrogatepass").encode(charset)
    except UnicodeError as e:
        raise BlockedEvent(use, "charset cannot hold the scrubbed body", host=host) from e
    _refuse_utf8_reading(out, ctx, use, host)
    return out


def _refuse_utf8_reading(out: bytes, ctx: ScrubContext, use: str, host: str) -> None:
    """A receiver that ignores the declared charset reads UTF-8: a value visible only so
    (a UTF-8 name labelled latin-1) could not be rewritten in the declared charset."""
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        return
    if ctx.changes(text):
        raise BlockedEvent(use, "body reads differently as UTF-8", host=host)


def _scrub_utf8(raw: bytes, media: str, ctx: ScrubContext, use: str, host: str) -> bytes:
    if "," in media:  # several Content-Type fields: which one the receiver reads is unknown
        raise BlockedEvent(use, "several content types", host=host)
    looks_json = raw.lstrip()[:1] in (b"{", b"[")
    if _is_json(media) or (not media and looks_json):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise BlockedEvent(use, "malformed JSON", host=host) from e
        return _scrub_json(raw, doc, ctx)
    if media == "application/x-www-form-urlencoded":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BlockedEvent(use, "undecodable form", host=host) from e
        new_text = _scrub_query(text, ctx)
        return raw if new_text is text else new_text.encode("utf-8")
    if media.startswith("text/"):
        if looks_json:  # a beacon's JSON sent as text/plain: its receiver undoes the escapes
            with suppress(orjson.JSONDecodeError):
                return _scrub_json(raw, orjson.loads(raw), ctx)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BlockedEvent(use, "undecodable text", host=host) from e
        new_text = ctx.text_and_urls(text)
        # Several JSON documents (NDJSON beacons, an event a line) are not one: their receiver
        # still undoes the escapes (``\u0040`` hid an e-mail address from the scan).
        if "\\u" in new_text and ctx.changes(_JSON_ESCAPE.sub(_unescape, new_text)):
            raise BlockedEvent(use, "escaped text", host=host)
        return raw if new_text is text else new_text.encode("utf-8")
    raise BlockedEvent(use, f"media type {media or 'unknown'}", host=host)


#: A JSON ``\uXXXX`` escape.
_JSON_ESCAPE: Final = re.compile(r"\\u([0-9A-Fa-f]{4})")


def _unescape(m: re.Match[str]) -> str:
    """The character a JSON escape stands for."""
    return chr(int(m.group(1), 16))


def _scrub_json(raw: bytes, doc: Any, ctx: ScrubContext) -> bytes:
    """``raw`` (read by orjson into ``doc``) scrubbed as data: escapes undone, keys checked."""
    exact = may_lose_numbers(raw)  # integers beyond 64 bits: read (and written) exactly
    if exact:
        try:
            doc = loads_exact(raw)
        except ValueError:  # nested too deep for the standard library: orjson's reading
            exact = False
    new = ctx.data(doc)
    if new is doc and forwards_what_was_read(raw, doc):
        return raw
    return dumps_exact(new) if exact else orjson.dumps(new)


def _scrub_path(path: str, ctx: ScrubContext) -> str:
    """Each segment read percent-decoded, as the receiver reads it; changed ones re-encoded."""
    segments = path.split("/")
    out: list[str] = []
    for segment in segments:
        text = unquote(segment)
        new = ctx.text_and_urls(text)
        out.append(segment if new is text else quote(new, safe=""))
    return path if all(a is b for a, b in zip(out, segments, strict=True)) else "/".join(out)


def _scrub_query(query: str, ctx: ScrubContext) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    out: list[tuple[str, str]] = []
    changed = False
    for k, v in pairs:
        nk, nv = ctx.text_and_urls(k), ctx.text_and_urls(v)
        changed = changed or nk is not k or nv is not v
        out.append((nk, nv))
    if not changed:
        # parse_qsl decodes; a value may only be visible encoded in the raw string
        return ctx.text_and_urls(query)
    return urlencode(out)
