"""multipart/form-data request bodies: text fields are scrubbed, file parts pass through.

Only field values are rewritten; every other byte (boundaries, part headers, files) is kept,
so the app's own multipart parser sees a well-formed body.
"""

from __future__ import annotations

import codecs
import re
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TYPE_CHECKING, Any

from piimw.problem import Problem

if TYPE_CHECKING:
    from piimw.exchange import Exchange, Headers, RequestOutcome

MAX_PARTS = 1000

#: A parameter as Werkzeug reads one (RFC 9110): ``;``, then ``key=token`` or
#: ``key="quoted"`` followed by nothing but blanks. Werkzeug skips anything else up to the next
#: ``;`` (``name=card(x`` is ``card``), where the email package reads it all (``card(x``).
_TOKEN = r"[\w!#$%&'*+\-.^`|~]+"
_PARAMETER = re.compile(rf'(?:;[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*)?)',
                        re.ASCII | re.DOTALL)
#: An RFC 2231 key: ``name*``, ``name*0``, ``name*0*``.
_EXTENDED = re.compile(r"(.*?)\*(?:(\d+)\*?)?$", re.ASCII)
#: RFC 2231 charsets Werkzeug decodes; it leaves a value in any other as written, where the
#: email package and Django decode it (``name*=utf-16''name`` is ``name`` to Werkzeug only).
_RFC2231_CHARSETS = frozenset({"", "ascii", "us-ascii", "utf-8", "iso-8859-1"})
#: RFC 2046's boundary characters. Werkzeug reads ``%22`` in a quoted boundary as ``"`` and
#: drops a backslash before any character, where the email package (Django, Starlette,
#: piimw) keeps both: under ``boundary="a%22b"`` Flask found parts piimw read as one field.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")


def _unambiguous(text: str) -> bool:
    """Do the parsers agree on the parameters of this header value? Only if every one is
    well formed (see :data:`_PARAMETER`), every RFC 2231 charset is one Werkzeug decodes, and
    continuations come in order (Werkzeug joins them in the order given, the email package
    by number)."""
    pos = text.find(";")
    if pos < 0:
        return True
    numbered: dict[str, int] = {}
    end = len(text.rstrip(" \t"))
    while pos < end:
        m = _PARAMETER.match(text, pos)
        if m is None or m.end() == pos:
            return False
        pos = m.end()
        key, value = m.group(1), m.group(2)
        if value is not None and (value.count('"') - value.count('\\"')) % 2:
            # "a\\": Werkzeug ends the value at the quote, the email package (which counts
            # every \" as escaped) reads on into the next parameter, and missed the name
            # Werkzeug found there (x="a\\"; name="card").
            return False
        extended = _EXTENDED.match(key) if key is not None and "*" in key else None
        if extended is None:
            continue
        charset, marked, _ = value.strip('"').partition("'")
        if key.endswith("*") and marked and charset.lower() not in _RFC2231_CHARSETS:
            return False
        if extended.group(2) is not None:
            base, number = extended.group(1).lower(), int(extended.group(2))
            if numbered.get(base, -1) + 1 != number:
                return False
            numbered[base] = number
    return True


def _params(value: bytes, *unique: str) -> dict[str, str] | None:
    """A header value's parameters as the email package reads them (quoted strings, RFC 2231
    ``name*=`` and continuations), or None when they are ill-formed (:func:`_unambiguous`)
    or one of ``unique`` is given twice: parsers disagree on which copy wins (Starlette and
    Django take the last ``boundary``), so piimw would inspect one field while the app
    reads another. Other parameters may repeat: clients send ``filename`` and ``filename*``
    together (.NET), and which wins changes nothing here."""
    text = value.decode("utf-8", "surrogateescape")
    if not _unambiguous(text):
        return None
    msg = Message()
    msg["x"] = text
    out: dict[str, str] = {}
    try:
        # Typed as str pairs, but an RFC 2231 value comes as (charset, language, text).
        params: list[tuple[str, Any]] = msg.get_params(header="x") or []
    except (TypeError, ValueError):  # name*= beside name*0=: the email package fails
        return None
    for key, raw in params[1:]:
        text = collapse_rfc2231_value(raw) if isinstance(raw, tuple) else raw
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if key in out:
            if key in unique:
                return None
            if not text:
                out[key] = text  # an empty copy wins: Django reads filename="" as a field
            continue
        out[key] = text
    return out


def _boundary(content_type: bytes) -> bytes | None:
    """The body's boundary; None if missing, given twice, beside a charset that is not
    UTF-8 (Starlette and Django read field names and values in it: UTF-16 turns bytes that
    name no tagged field for piimw into one), or not made of RFC 2046's characters (see
    :data:`_BOUNDARY`)."""
    params = _params(content_type, "boundary", "charset")
    boundary = params.get("boundary") if params is not None else None
    if params is None or not boundary or not _utf8(params.get("charset")) or \
            not _BOUNDARY.fullmatch(boundary):
        return None
    return boundary.encode("utf-8")


def _utf8(charset: str | None, ascii_text: bool = False) -> bool:
    """Is ``charset`` (a ``charset`` parameter, or None for none) UTF-8, or, for text that
    is ``ascii_text``, one that reads ASCII as UTF-8 does (Java's HttpClient labels every
    text field ``charset=ISO-8859-1``, Python's email package ``us-ascii``)?"""
    if charset is None:
        return True
    try:
        name = codecs.lookup(charset.strip()).name
    except LookupError:
        return False
    return name == "utf-8" or (ascii_text and name in _ASCII_READERS)


#: Charsets in which ASCII bytes read as they do in UTF-8, whichever parser decodes them.
_ASCII_READERS = frozenset({"ascii", "iso8859-1", "cp1252"})


#: Content-Transfer-Encodings that leave a part's bytes as they are.
_IDENTITY_CODINGS = frozenset({"7bit", "8bit", "binary"})


class _Malformed(ValueError):
    """A part whose headers the frameworks could read differently from piimw."""


def _disposition(head: bytes, content: bytes) -> tuple[str | None, bool]:
    """(field name, is_file) from a part's headers.

    Refused (:class:`_Malformed`) where a framework reads the part another way: a header
    folded onto the next line or lines split by a bare CR or LF (Werkzeug unfolds and splits
    them, finding a name piimw did not), a name with whitespace around it (Django strips
    it) or a backslash in it (Werkzeug drops one before any character, the others only
    before a quote or a backslash: ``"na\\me"``), and, on a field, a
    ``Content-Transfer-Encoding`` (Django decodes base64) or a charset other than UTF-8
    (Werkzeug reads latin-1) unless ``content`` is ASCII in one that reads it alike.
    """
    lines = head.split(b"\r\n")
    found: tuple[str | None, bool] | None = None
    coded = False
    for line in lines:
        if b"\r" in line or b"\n" in line or line[:1] in (b" ", b"\t"):
            raise _Malformed
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-transfer-encoding":
            coded = coded or value.strip().lower().decode("latin-1") not in _IDENTITY_CODINGS
        elif name == b"content-type":
            media = _params(value, "charset")
            coded = coded or media is None or \
                not _utf8(media.get("charset"), content.isascii())
        if name != b"content-disposition":
            continue
        params = _params(value, "name")
        if found is not None or params is None:
            raise _Malformed  # two dispositions, or a parameter given twice
        field = params.get("name")
        if field is not None and (field != field.strip() or "\\" in field):
            raise _Malformed
        # A file only with a filename that is not empty: Django reads filename="" (what a
        # browser sends for an empty file input) as a field, Werkzeug as a file; inspecting
        # it as a field covers both.
        found = field, bool(params.get("filename"))
    if found is None:
        return None, False
    if coded and found[0] is not None and not found[1]:
        raise _Malformed
    return found


def scrub_multipart(exchange: Exchange, headers: Headers, body: bytes) -> RequestOutcome:
    from piimw.exchange import RequestOutcome, declared_names, header, rejected_problem

    route = exchange.route
    assert route is not None
    assert route.request is not None
    boundary = _boundary(header(headers, b"content-type") or b"")
    bad = RequestOutcome(problem=Problem(400, "malformed-multipart",
                                         "The multipart body cannot be parsed."))
    if boundary is None:
        return bad
    delim = b"--" + boundary
    chunks = body.split(delim)
    if len(chunks) < 3 or len(chunks) > MAX_PARTS + 2 or not chunks[-1].startswith(b"--"):
        return bad
    parts: list[tuple[bytes, bytes, str | None, bool]] = []
    fields: dict[str, Any] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            return bad
        head, sep, content = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep and head.endswith(b"\r\n"):
            # An empty value without its line break, as Werkzeug's test client writes one
            # (Werkzeug reads "", Django drops the part): read as "".
            head, sep = head[:-2], b"\r\n\r\n"
        if not sep:
            return bad
        try:
            name, is_file = _disposition(head, content)
        except _Malformed:
            return bad
        parts.append((head, content, name, is_file))
        if name is not None and not is_file:
            try:
                fields.setdefault(name, []).append(content.decode("utf-8"))
            except UnicodeDecodeError:
                return bad
    flat = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
    res = exchange._scrub(flat, route.request.plan, "app", collect=True)
    if res.rejected is not None:
        return RequestOutcome(problem=rejected_problem(res.rejected_path, declared_names(route)))
    if res.value is flat:
        return RequestOutcome(body)
    new_values = {k: list(v) if isinstance(v, list) else [v] for k, v in res.value.items()}
    out = [chunks[0]]
    for head, content, name, is_file in parts:
        if name is not None and not is_file:
            values = new_values.get(name)
            if not values:
                continue  # dropped field
            value = values.pop(0)
            content = b"" if value is None else str(value).encode("utf-8")
        out.append(b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n")
    out.append(chunks[-1])
    return RequestOutcome(delim.join(out), changed=True)
