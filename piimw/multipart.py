"""multipart/form-data request bodies: text fields are scrubbed, file parts pass through.

Only field values are rewritten; every other byte (boundaries, part headers, files) is kept,
so the app's own multipart parser sees a well-formed body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from piimw.problem import Problem

if TYPE_CHECKING:
    from piimw.exchange import Exchange, Headers, RequestOutcome

MAX_PARTS = 1000


def _boundary(content_type: bytes) -> bytes | None:
    for part in content_type.split(b";")[1:]:
        k, _, v = part.strip().partition(b"=")
        if k.lower() == b"boundary" and v:
            return v.strip(b'"')
    return None


def _disposition(head: bytes) -> tuple[str | None, bool]:
    """(field name, is_file) from a part's headers."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"content-disposition":
            continue
        field_name: str | None = None
        is_file = False
        for item in value.split(b";")[1:]:
            k, _, v = item.strip().partition(b"=")
            key = k.strip().lower()
            if key == b"name":
                field_name = v.strip(b'"').decode("utf-8", "replace")
            elif key in (b"filename", b"filename*"):
                is_file = True
        return field_name, is_file
    return None, False


def scrub_multipart(exchange: Exchange, headers: Headers, body: bytes) -> RequestOutcome:
    from piimw.exchange import RequestOutcome, header, rejected_problem

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
        if not sep:
            return bad
        name, is_file = _disposition(head)
        parts.append((head, content, name, is_file))
        if name is not None and not is_file:
            try:
                fields.setdefault(name, []).append(content.decode("utf-8"))
            except UnicodeDecodeError:
                return bad
    flat = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
    res = exchange._scrub(flat, route.request.plan, "app", collect=True)
    if res.rejected is not None:
        return RequestOutcome(problem=rejected_problem(res.rejected))
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
