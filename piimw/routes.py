"""The route table: method + path template (``/users/{id}``) to request and response plans.

Built from OpenAPI operations or from explicit ``[[routes]]`` entries, once, at start-up.
Adapters that know their framework's route template look it up directly; the pure ASGI and
WSGI middleware match the raw path against the templates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from piimw.errors import SchemaError
from piimw.plan import Node, Plan, entries_of
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore, escape_token
from piimw.schema.tags import tag_of
from piimw.schema.validate import Validator

logger = logging.getLogger("piimw")

HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
#: Methods frameworks answer with a GET view (HEAD always; OPTIONS and TRACE where a view
#: takes any method, as Django's function views do): without a route of their own, the GET
#: route's plan applies, or the view's answer would pass unread.
_LIKE_GET = frozenset({"HEAD", "OPTIONS", "TRACE"})
_PARAM = re.compile(r"\{([^{}/]+)\}")


#: Streams of JSON lines: a response in one whose items are tagged is read line by line.
LINE_STREAM_TYPES = frozenset({"application/x-ndjson", "application/jsonl",
                               "application/jsonlines", "application/x-jsonlines"})
#: Media types of streams: never buffered whole for a tagged schema piimw cannot walk.
STREAM_TYPES = LINE_STREAM_TYPES | {"application/json-seq", "text/event-stream"}


def status_key(status: object) -> str:
    """A response's key in :attr:`Route.responses`: ``200``, ``2XX``, or ``default`` (an
    OpenAPI ``default`` upper-cased never matched, and its body was never read)."""
    key = str(status).strip()
    return "default" if key.lower() == "default" else key.upper()


def base_media_type(media_type: str) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json``."""
    return media_type.split(";", 1)[0].strip().lower()


@lru_cache(maxsize=256)
def is_json_media_type(media_type: str) -> bool:
    mt = base_media_type(media_type)
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


@dataclass
class Body:
    """A plan and a validator for one body (request, or response with one status).

    ``required``: an empty request body is refused (OpenAPI's ``requestBody.required``,
    false unless said; a configured route's body is required). ``media_types``: the media
    types the operation declares for this body without ``x-pii`` in their schemas (or with
    none), lowercased: a body in one of them that piimw cannot read (a file upload's
    octet-stream, a CSV export) is passed on unread. A type piimw cannot read whose schema
    is tagged (XML) is refused on a request and buffered and scanned as text on a response
    (an event stream excepted: it is never buffered); its tags are not applied field by
    field (piimw walks JSON, form and multipart bodies only).
    """

    plan: Plan
    validator: Validator | None
    required: bool = True
    media_types: frozenset[str] = frozenset()
    #: Stream types (NDJSON, JSON Lines) of a response whose items are tagged: media type
    #: to the items' plan. Such a response is read line by line as it streams.
    streams: dict[str, Plan] = field(default_factory=dict)


@dataclass
class Route:
    method: str
    template: str
    request: Body | None = None
    responses: dict[str, Body] = field(default_factory=dict)
    query: Plan | None = None
    operation_id: str | None = None
    #: Path parameters tagged with ``x-pii``: name to category. Their values are known
    #: values of the request (an access log prints the path).
    path_tags: dict[str, str] = field(default_factory=dict)

    @property
    def has_plan(self) -> bool:
        return bool(
            (self.request is not None and not self.request.plan.empty)
            or (self.query is not None and not self.query.empty)
            or any(not b.plan.empty for b in self.responses.values())
            or (self.request is not None and self.request.validator is not None)
            or bool(self.path_tags)
            or any(b.streams for b in self.responses.values())
        )

    def path_values(self, path: str) -> list[tuple[str, str]]:
        """(value, category) of the tagged path parameters in ``path``, percent-decoded,
        the template matched at its end (after a mount or ``root_path`` prefix); none if it
        does not match (another spelling)."""
        if not self.path_tags:
            return []
        regex, names = _param_regex(self.template)
        # A mount or root_path prefix (uvicorn --root-path) may come before the template.
        m = regex.fullmatch(path.rstrip("/") or "/") or regex.fullmatch(path)
        if m is None:
            return []
        return [(unquote(value), self.path_tags[name])
                for name, value in zip(names, m.groups(), strict=True)
                if name in self.path_tags]

    def response_for(self, status: int) -> Body | None:  # keys: see status_key
        """The response body spec for ``status``: exact, then ``2XX``, then ``default``."""
        r = self.responses
        return r.get(str(status)) or r.get(f"{status // 100}XX") or r.get("default")


def _shape(template: str) -> str:
    """A template without its parameter names or trailing slash: ``/users/{}``."""
    return _PARAM.sub("{}", template).rstrip("/") or "/"


@lru_cache(maxsize=256)
def _param_regex(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex with one group per parameter of ``template``, and the parameters' names."""
    out, names, pos = [], [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append("([^/]+)")
        names.append(m.group(1))
        pos = m.end()
    out.append(re.escape(template[pos:].rstrip("/")))
    return re.compile("(?:/[^?#]*?)?" + ("".join(out) or "/")), tuple(names)


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append("[^/]+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + "/?")


class RouteTable:
    """All routes with a plan. Literal templates match by dict lookup, the rest by regex."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Route] = {}
        self._by_shape: dict[tuple[str, str], Route] = {}
        self._templated: list[tuple[re.Pattern[str], Route]] = []
        # (method, framework template or None, path) -> route: every request asks, and most
        # ask about the same few paths. Bounded: paths with ids in them are unbounded.
        self._memo: dict[tuple[str, str | None, str], Route | None] = {}
        #: Bumped by :meth:`add`: memos kept outside the table (adapters) compare it.
        self.version = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._by_key.values())

    def add(self, route: Route) -> None:
        key = (route.method, route.template)
        if key in self._by_key:
            raise SchemaError(f"route {route.method} {route.template} is defined twice")
        self._by_key[key] = route
        self._memo.clear()
        self.version += 1
        self._by_shape.setdefault((route.method, _shape(route.template)), route)
        if _PARAM.search(route.template):
            self._templated.append((_template_regex(route.template), route))
            # Most specific first: more literal characters win over parameters.
            self._templated.sort(key=lambda pr: -len(_PARAM.sub("", pr[1].template)))

    def get(self, method: str, template: str) -> Route | None:
        """Look up by the framework's own route template (``/users/{id}``).

        Parameter names and a trailing slash may differ from the OpenAPI spelling
        (``/users/{pk}/`` finds ``/users/{id}``): frameworks and documents rarely agree.
        """
        hit = self._by_key.get((method, template)) or self._by_key.get(("*", template))
        if hit is None:
            shape = _shape(template)
            hit = self._by_shape.get((method, shape)) or self._by_shape.get(("*", shape))
        return hit

    def known_template(self, method: str, template: str | None) -> str | None:
        """``template`` (or it without its trailing slash) if it names a route here, else None.

        Adapters report it so that a template spelled differently from the configuration
        (``{pk}`` in the framework, ``{id}`` in the OpenAPI file) falls back to the path.
        """
        if template is None:
            return None
        for candidate in (template, template.rstrip("/") or "/"):
            if self.get(method, candidate) is not None or (
                    method in _LIKE_GET and self.get("GET", candidate) is not None):
                return candidate
        return None

    def lookup(self, method: str, template: str | None, path: str) -> Route | None:
        """The route for a request: by the framework's template first, then by the path.

        A template spelled differently from the configuration must never switch protection
        off, so a miss by template still tries the path. Remembered per (method, template,
        path), up to 8192 entries; an empty table answers None at once.
        """
        if not self._by_key:
            return None
        key = (method, template, path)
        memo = self._memo
        try:
            return memo[key]
        except KeyError:
            pass
        hit = self.get(method, template) if template is not None else None
        if hit is None:
            hit = self.match(method, path)
        if hit is None and method in _LIKE_GET:
            hit = self.lookup("GET", template, path)
        if len(memo) >= 8192:
            memo.clear()
        memo[key] = hit
        return hit

    def match(self, method: str, path: str) -> Route | None:
        """Match a concrete request path against the templates."""
        hit = self.get(method, path)
        if hit is None and len(path) > 1 and path.endswith("/"):
            hit = self.get(method, path.rstrip("/"))
        if hit is not None:
            return hit
        for rx, route in self._templated:
            if route.method in (method, "*") and rx.fullmatch(path):
                return route
        return None


class OpenAPIRoutes:
    """Extract routes from an OpenAPI 3.x document loaded in a :class:`SchemaStore`."""

    def __init__(self, store: SchemaStore, compiler: Compiler, registry: Any,
                 fast: Any = None) -> None:
        self.store = store
        self.compiler = compiler
        self.registry = registry
        self.fast = fast

    def routes(self, uri: str) -> Iterator[Route]:
        doc = self.store.documents[uri]
        name = self.store.names[uri]
        paths = doc.get("paths") or {}
        if not isinstance(paths, Mapping):
            raise SchemaError("'paths' must be an object", source=name, pointer="/paths")
        for template, item in paths.items():
            base = f"/paths/{escape_token(template)}"
            item_uri, item_ptr, item = self._deref(uri, base, item)
            if not isinstance(item, Mapping):
                continue
            shared_params = item.get("parameters") or []
            for method, op in item.items():
                if method.upper() not in HTTP_METHODS or not isinstance(op, Mapping):
                    continue
                op_ptr = f"{item_ptr}/{method}"
                yield self._route(item_uri, op_ptr, method.upper(), template, op, shared_params,
                                  item_ptr)

    def _deref(self, uri: str, ptr: str, node: Any) -> tuple[str, str, Any]:
        seen = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 16:
            base = self.store.base_uri(uri, ptr)
            uri, ptr, node = self.store.resolve(base, node["$ref"], source=self.store.names[uri],
                                                pointer=f"{ptr}/$ref")
            seen += 1
        return uri, ptr, node

    def _json_schema(self, uri: str, ptr: str, holder: Any,
                     forms: bool = False) -> tuple[str, str] | None:
        """Where the body's schema is: a JSON media type's, else (``forms``: request bodies,
        which piimw also reads as form and multipart fields) a form media type's."""
        content = holder.get("content") if isinstance(holder, Mapping) else None
        if not isinstance(content, Mapping):
            return None
        fallback: str | None = None
        for media, obj in content.items():
            if not isinstance(obj, Mapping) or "schema" not in obj:
                continue
            if is_json_media_type(media) or media in ("*/*", "application/*"):
                return uri, f"{ptr}/content/{escape_token(media)}/schema"
            if forms and fallback is None and base_media_type(media) in (
                    "application/x-www-form-urlencoded", "multipart/form-data"):
                fallback = media
        return None if fallback is None else (
            uri, f"{ptr}/content/{escape_token(fallback)}/schema")

    def _tagged_unread(self, uri: str, ptr: str, holder: Any,
                       response: bool = False) -> tuple[str, str] | None:
        """Where a body declared only in types piimw does not walk (XML) has a tagged
        schema, if it has one: such a body gets a plan all the same, so that it is refused
        on a request and scanned as text on a response, as beside a JSON type, instead of
        passing unread (its tags usually live on components the JSON operations share).

        Not a stream (NDJSON, JSON Lines, JSON text sequences, server-sent events, or any
        OpenAPI 3.2 ``itemSchema``): buffering one whole would stall it (found by review).
        A response's JSON lines are read line by line (:meth:`_stream_plans`); other streams
        pass unread, with a start-up warning naming their schema."""
        content = holder.get("content") if isinstance(holder, Mapping) else None
        name = self.store.names.get(uri, uri)
        for media, obj in (content.items() if isinstance(content, Mapping) else ()):
            stream = base_media_type(str(media)) in STREAM_TYPES or (
                isinstance(obj, Mapping) and "itemSchema" in obj)
            for key in ("schema", "itemSchema"):
                if not isinstance(obj, Mapping) or key not in obj:
                    continue
                at = f"{ptr}/content/{escape_token(str(media))}/{key}"
                if stream:
                    # A response's JSON lines are read line by line (_stream_plans); other
                    # streams, and a request's, pass unread.
                    lines = response and base_media_type(str(media)) in LINE_STREAM_TYPES
                    if not lines and self._tagged(uri, at):
                        logger.warning("piimw: %s#%s is tagged with x-pii in %s, a stream "
                                       "piimw does not read: it passes unread", name, at, media)
                    continue
                try:
                    tagged = not self.compiler.compile(uri, at).empty
                except Exception as exc:  # an XML $ref piimw never reads otherwise
                    logger.warning("piimw: the schema at %s#%s could not be compiled (%s); "
                                   "the body passes unread", name, at, exc)
                    continue
                if tagged:
                    logger.warning(
                        "piimw: %s#%s is tagged with x-pii in %s, a type piimw does not read "
                        "field by field: such requests are refused (415) and such responses "
                        "scanned as text", name, at, media)
                    return uri, at
        return None

    def _stream_plans(self, uri: str, ptr: str, holder: Any, name: str) -> dict[str, Plan]:
        """Line streams (NDJSON, JSON Lines) whose items are tagged: media type to the items'
        plan (OpenAPI 3.2's ``itemSchema``, else the ``schema`` such types carry in 3.1
        documents). A stream whose schema piimw cannot compile gets none (a warning)."""
        content = holder.get("content") if isinstance(holder, Mapping) else None
        out: dict[str, Plan] = {}
        for media, obj in (content.items() if isinstance(content, Mapping) else ()):
            base = base_media_type(str(media))
            if base not in LINE_STREAM_TYPES or not isinstance(obj, Mapping):
                continue
            key = "itemSchema" if "itemSchema" in obj else "schema" if "schema" in obj else None
            if key is None:
                continue
            at = f"{ptr}/content/{escape_token(str(media))}/{key}"
            try:
                plan = self.compiler.compile(uri, at, f"{name} {base} item")
            except Exception as exc:
                logger.warning("piimw: the schema at %s#%s could not be compiled (%s); the "
                               "stream passes unread", self.store.names.get(uri, uri), at, exc)
                continue
            if not plan.empty:
                # Clients and servers name the same format differently: every name of it.
                out.update(dict.fromkeys(LINE_STREAM_TYPES, plan))
        return out

    def _body(self, loc: tuple[str, str], name: str, holder: Any, at: tuple[str, str]) -> Body:
        plan = self.compiler.compile(loc[0], loc[1], name)
        validator = Validator(self.store, loc[0], loc[1], self.registry, self.fast)
        return Body(plan, validator,
                    required=bool(isinstance(holder, Mapping) and holder.get("required")),
                    media_types=self._untagged_media(holder, at, loc, plan))

    def _untagged_media(self, holder: Any, at: tuple[str, str], loc: tuple[str, str],
                        plan: Plan) -> frozenset[str]:
        """The declared media types whose schemas (``schema``, OpenAPI 3.2's ``itemSchema``)
        carry no ``x-pii``, or that have none; a type one of whose variants (with parameters)
        is tagged, or whose schema piimw cannot compile, counts as tagged. ``loc`` and
        ``plan``: the schema the body's plan was compiled from, and that plan (not compiled
        twice)."""
        content = holder.get("content") if isinstance(holder, Mapping) else None
        untagged: set[str] = set()
        tagged: set[str] = set()
        for media, obj in (content.items() if isinstance(content, Mapping) else ()):
            ptr = f"{at[1]}/content/{escape_token(str(media))}"
            keys = [k for k in ("schema", "itemSchema")
                    if isinstance(obj, Mapping) and k in obj]
            (tagged if any(not plan.empty if (at[0], f"{ptr}/{k}") == loc
                           else self._tagged(at[0], f"{ptr}/{k}") for k in keys)
             else untagged).add(base_media_type(str(media)))
        return frozenset(untagged - tagged)

    def _tagged(self, uri: str, ptr: str) -> bool:
        try:
            return not self.compiler.compile(uri, ptr).empty
        except Exception as exc:  # a schema piimw never reads otherwise (an XML $ref)
            logger.warning("piimw: the schema at %s#%s could not be compiled (%s); its media "
                           "type counts as tagged", self.store.names.get(uri, uri), ptr, exc)
            return True

    def _route(self, uri: str, op_ptr: str, method: str, template: str, op: Mapping[str, Any],
               shared_params: Any, item_ptr: str) -> Route:
        route = Route(method, template, operation_id=op.get("operationId"))
        if "requestBody" in op:
            rb_uri, rb_ptr, rb = self._deref(uri, f"{op_ptr}/requestBody", op["requestBody"])
            loc = self._json_schema(rb_uri, rb_ptr, rb, forms=True) or self._tagged_unread(
                rb_uri, rb_ptr, rb)
            if loc is not None:
                route.request = self._body(loc, f"{method} {template} request", rb,
                                           (rb_uri, rb_ptr))
        responses = op.get("responses") or {}
        for status, resp in responses.items():
            r_uri, r_ptr, r = self._deref(uri, f"{op_ptr}/responses/{escape_token(str(status))}",
                                          resp)
            loc = self._json_schema(r_uri, r_ptr, r) or self._tagged_unread(r_uri, r_ptr, r,
                                                                            response=True)
            name = f"{method} {template} response {status}"
            streams = self._stream_plans(r_uri, r_ptr, r, name)
            if loc is not None:
                body = self._body(loc, name, r, (r_uri, r_ptr))
                body.streams = streams
                route.responses[status_key(status)] = body
            elif streams:  # a streaming operation: no JSON body, tagged lines
                route.responses[status_key(status)] = Body(
                    Plan(None, (), self.store.names.get(r_uri, r_uri), name=name), None,
                    media_types=self._untagged_media(r, (r_uri, r_ptr), ("", ""),
                                                     Plan(None)),
                    streams=streams)
        route.query, route.path_tags = self._parameters(uri, op_ptr, op, shared_params,
                                                        item_ptr)
        return route

    def _parameters(self, uri: str, op_ptr: str, op: Mapping[str, Any], shared: Any,
                    item_ptr: str) -> tuple[Plan | None, dict[str, str]]:
        """The query parameters' plan, and the tagged path parameters' categories."""
        root = Node()
        path_tags: dict[str, str] = {}
        params = [(f"{item_ptr}/parameters/{i}", p) for i, p in enumerate(shared or [])]
        params += [(f"{op_ptr}/parameters/{i}", p) for i, p in enumerate(op.get("parameters")
                                                                            or [])]
        for ptr, p in params:
            p_uri, p_ptr, p = self._deref(uri, ptr, p)
            if not isinstance(p, Mapping) or "name" not in p:
                continue
            if p.get("in") == "path":
                tag = tag_of(p, self.store.names[p_uri], p_ptr)
                if tag is None and isinstance(p.get("schema"), Mapping):
                    # Tagged in its schema, where a query parameter's tag is read too.
                    sub = self.compiler.compile(p_uri, f"{p_ptr}/schema").root
                    tag = sub.tag if sub is not None else None
                if tag is not None and tag.categories:
                    path_tags[str(p["name"])] = tag.category
                continue
            if p.get("in") != "query":
                continue
            name = self.store.names[p_uri]
            tag = tag_of(p, name, p_ptr)
            if tag is None and isinstance(p.get("schema"), Mapping):
                sub = self.compiler.compile(p_uri, f"{p_ptr}/schema").root
                if sub is not None:
                    root.props[str(p["name"])] = sub
                continue
            if tag is not None:
                leaf = Node()
                leaf.tag = tag
                root.props[str(p["name"])] = leaf
        if root.is_empty():
            return None, path_tags
        return Plan(root, entries_of(root, self.store.names[uri]), self.store.names[uri],
                    name="query"), path_tags
