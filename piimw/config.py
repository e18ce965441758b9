"""Configuration: one schema of settings from a TOML file, a dict or keyword arguments.

Validated at start-up; every error names the file, the JSON pointer and what is wrong.
Secrets (the hash key) come from the environment, never from the file.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jsonschema

from piimw.audit import AUDIT_SETTINGS_SCHEMA, AuditTrail, policy_hash
from piimw.detect import DEFAULT_DETECTORS, Detectors
from piimw.engine import Scrubber
from piimw.errors import ConfigError, SchemaError
from piimw.findings import ACTIONS, SINKS, Action, Sink
from piimw.policy import REASONS, Policy, Rule
from piimw.registry import REGISTRY_SCHEMA
from piimw.routes import Body, OpenAPIRoutes, Route, RouteTable, status_key
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore
from piimw.schema.validate import Validator, fast_registry
from piimw.signals import CONSENT_SCHEMA, ConsentSettings
from piimw.taxonomy import UnknownCategoryError, resolve, resolve_use
from piimw.transform import Hasher

if TYPE_CHECKING:
    from piimw.discover import DiscoverySampler
    from piimw.registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_STR_LIST = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "environment": {"type": "string", "minLength": 1},
        "schemas": _STR_LIST,
        "openapi": _STR_LIST,
        "detectors": {"anyOf": [{"const": "all"}, {"type": "array", "items": {
            "enum": list(DEFAULT_DETECTORS)}}]},
        "detect_undeclared": {"type": "boolean"},
        "max_body_bytes": {"type": "integer", "minimum": 0},
        "max_response_bytes": {"type": "integer", "minimum": 0},
        "validate_requests": {"type": "boolean"},
        "validate_responses": {"type": "boolean"},
        "scrub_error_pages": {"type": "boolean"},
        "hash": {
            "type": "object", "additionalProperties": False,
            "properties": {"key_env": {"type": "string", "minLength": 1},
                           "key_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                           "previous_key_envs": {"type": "array", "items": {
                               "type": "string", "minLength": 1}}},
        },
        "routes": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["route"],
            "properties": {
                "route": {"type": "string", "pattern": "^([A-Z]+|\\*) /"},
                "request": {"type": "string"},
                "response": {"anyOf": [{"type": "string"}, {
                    "type": "object", "additionalProperties": {"type": "string"}}]},
                "query": {"type": "string"},
            },
        }},
        "rules": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "action"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "action": {"enum": list(ACTIONS)},
                "categories": _STR_LIST, "category": _STR_LIST,
                "sinks": {"anyOf": [{"enum": list(SINKS)},
                                    {"type": "array", "items": {"enum": list(SINKS)}}]},
                "sink": {"anyOf": [{"enum": list(SINKS)},
                                   {"type": "array", "items": {"enum": list(SINKS)}}]},
                "uses": _STR_LIST, "use": _STR_LIST,
                "environments": _STR_LIST, "environment": _STR_LIST,
                "routes": _STR_LIST, "route": _STR_LIST,
                "event_types": _STR_LIST, "event_type": _STR_LIST,
                "subjects": {"type": "array", "items": {"type": "string",
                                                         "pattern": "^hmac:"}},
                "tiers": {"type": "array", "items": {"enum": ["identifier", "quasi",
                                                              "sensitive"]}},
                "requires_opt_in": {"type": "boolean"},
                "reason": {"enum": list(REASONS)},
            },
        }},
        "consent": CONSENT_SCHEMA,
        "registry": REGISTRY_SCHEMA,
        "audit": AUDIT_SETTINGS_SCHEMA,
        "discovery": {"type": "object", "additionalProperties": False, "properties": {
            "enabled": {"type": "boolean"}, "detector": {"enum": ["ner", "presidio"]},
            "rate": {"type": "number", "minimum": 0, "maximum": 1},
            "queue_size": {"type": "integer", "minimum": 1},
            "max_chars": {"type": "integer", "minimum": 1},
            "duty": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}},
    },
}
def _is_integer(_checker: Any, instance: object) -> bool:
    """An int, not a float of integral value (JSON Schema's own reading): ``1e6`` in TOML is a
    float, and a float limit failed every request later (``read(1000001.0)``)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_STRICT = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))
_VALIDATOR = _STRICT(CONFIG_SCHEMA)


def _describe(error: jsonschema.ValidationError) -> str:
    """A message from the keyword, not jsonschema's (which quotes the value)."""
    kw, expected = error.validator, error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if kw == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        return f"unknown setting(s) {', '.join(map(repr, extra))}"
    if kw == "type":
        return f"expected {expected}"
    if kw in ("enum", "const"):
        options = expected if isinstance(expected, list) else [expected]
        return f"expected one of: {', '.join(map(str, options))}"
    if kw == "required":
        names = expected if isinstance(expected, list) else []
        missing = [k for k in names if isinstance(error.instance, Mapping)
                   and k not in error.instance]
        return f"missing required setting(s) {', '.join(map(repr, missing))}"
    if kw == "anyOf":
        return "has the wrong type or value"
    if kw == "pattern":
        return f"must match {expected}"
    return f"fails {kw} {expected!r}"


def _pointer(parts: Any) -> str:
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in parts)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass
class Config:
    """Validated settings plus everything compiled from them (schemas, routes, policy)."""

    environment: str = "production"
    routes: RouteTable = field(default_factory=RouteTable)
    policy: Policy = field(default_factory=Policy)
    detectors: Detectors = field(default_factory=Detectors)
    hasher: Hasher | None = None
    #: Keys being rotated out (``hash.previous_key_envs``): the registry moves records kept
    #: under them to the current key when their user is next seen.
    previous_hashers: tuple[Hasher, ...] = ()
    detect_undeclared: bool = True
    max_body_bytes: int = 1 << 20
    max_response_bytes: int = 4 << 20
    validate_requests: bool = True
    validate_responses: bool = True
    scrub_error_pages: bool = True
    store: SchemaStore = field(default_factory=SchemaStore)
    source: str = "<dict>"
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: Relative paths in the settings are relative to this (the settings file's directory).
    base_dir: Path | None = None
    consent_settings: ConsentSettings = field(default_factory=ConsentSettings)
    audit: AuditTrail | None = None
    discovery: DiscoverySampler | None = None

    @cached_property
    def registry(self) -> Registry | None:
        """The opt-out registry (``[registry]``), opened on first use; None if not configured."""
        from piimw.registry import Registry

        return Registry.from_config(self)

    @cached_property
    def scrubber(self) -> Scrubber:
        return Scrubber(self.policy, self.detectors, self.hasher,
                        detect_undeclared=self.detect_undeclared)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *,
                  environ: Mapping[str, str] | None = None,
                  openapi_documents: Mapping[str, Mapping[str, Any]] | None = None,
                  services: bool = True) -> Config:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read configuration: {e.strerror}", source=str(p)) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML: {e}", source=str(p)) from None
        return cls.from_dict(data, base_dir=p.parent, source=str(p), environ=environ,
                             openapi_documents=openapi_documents, services=services)

    @classmethod
    def from_kwargs(cls, **settings: Any) -> Config:
        return cls.from_dict(settings, source="<keyword arguments>")

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        source: str = "<dict>",
        environ: Mapping[str, str] | None = None,
        openapi_documents: Mapping[str, Mapping[str, Any]] | None = None,
        services: bool = True,
    ) -> Config:
        """``openapi_documents``: in-memory OpenAPI documents by display name (e.g. FastAPI's
        ``app.openapi()``), loaded exactly like the files named by ``openapi``.
        ``services=False`` validates everything but starts no audit writer or sampler
        (``piimw check``, ``map`` and ``suggest`` read a configuration, they do not serve it)."""
        env = os.environ if environ is None else environ
        if not isinstance(data, Mapping):
            raise ConfigError("configuration must be a table/dict", source=source)
        if "hash" in data and isinstance(data["hash"], Mapping) and "key" in data["hash"]:
            raise ConfigError("secrets never go in configuration; set the key in the "
                              "environment variable named by hash.key_env",
                              source=source, pointer="/hash/key")
        errors = sorted(_VALIDATOR.iter_errors(dict(data)), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise ConfigError(_describe(e), source=source, pointer=_pointer(e.absolute_path))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        cfg = cls(source=source, raw=data, base_dir=base.resolve())
        cfg.environment = str(data.get("environment") or env.get("PIIMW_ENVIRONMENT")
                              or "production")
        for key in ("detect_undeclared", "validate_requests", "validate_responses",
                    "scrub_error_pages", "max_body_bytes", "max_response_bytes"):
            if key in data:
                setattr(cfg, key, data[key])
        det = data.get("detectors", "all")
        cfg.detectors = Detectors(None if det == "all" else det)
        rules = [_rule(r, source, f"/rules/{i}") for i, r in enumerate(data.get("rules", []))]
        cfg.policy = Policy(rules, environment=cfg.environment)
        cfg._load_schemas(data, base, source, openapi_documents or {})
        cfg.consent_settings = ConsentSettings.from_config(data.get("consent"), source=source)
        if "registry" in data:  # fail at start-up, not on the first signed-in request
            from piimw.registry import registry_url

            registry_url(data["registry"], env, source=source)
            if not env.get(data.get("hash", {}).get("key_env", "PIIMW_HASH_KEY")):
                raise ConfigError("the opt-out registry keys subjects with the hash key; set "
                                  "the environment variable named by hash.key_env",
                                  source=source, pointer="/hash/key_env")
        cfg.hasher = _hasher(data.get("hash", {}), env, source, needed=cfg._hash_user(rules))
        cfg.previous_hashers = _previous_hashers(data.get("hash", {}), env, source)
        if services:  # tools that only read the configuration must not append to the trail
            cfg.audit = AuditTrail.from_config(data, cfg.environment, policy_hash(cfg),
                                               environ=env, source=source,
                                               base_dir=cfg.base_dir)
            cfg.discovery = _discovery(data.get("discovery"), cfg)
        return cfg

    def _hash_user(self, rules: list[Rule]) -> str:
        """What uses the hash action (a rule, or a schema and the tagged path), or ``""``:
        a missing key is then reported where the user can find it."""
        for r in rules:
            if r.action == "hash":
                return f"rule {r.id!r}"
        for route in self.routes:
            bodies = [b for b in (route.request, *route.responses.values()) if b is not None]
            plans = [route.query, *(b.plan for b in bodies),
                     *(p for b in bodies for p in b.streams.values())]
            for e in (e for p in plans if p is not None for e in p.entries):
                if e.tag.action == "hash":
                    return f"{e.source} at {e.pattern} ({route.method} {route.template})"
        return ""

    def _load_schemas(self, data: Mapping[str, Any], base: Path, source: str,
                      documents: Mapping[str, Mapping[str, Any]]) -> None:
        store = self.store
        openapi_uris: list[str] = []
        for i, entry in enumerate(_as_list(data.get("schemas"))):
            p = _path(base, entry, source, f"/schemas/{i}")
            if p.is_dir():
                store.add_directory(p)
            else:
                store.add_file(p)
        for i, entry in enumerate(_as_list(data.get("openapi"))):
            p = _path(base, entry, source, f"/openapi/{i}")
            openapi_uris.append(store.add_file(p))
        for i, (name, document) in enumerate(documents.items()):
            copied = copy.deepcopy(dict(document))  # the store must not share the caller's dicts
            openapi_uris.append(store.add_document(copied, f"urn:piimw:openapi:{i}", name))
        # Files named by explicit routes join the store first, so registries are built once.
        routes_raw = data.get("routes", [])
        for i, entry in enumerate(routes_raw):
            for key in ("request", "query"):
                if key in entry:
                    _schema_ref(entry[key], store, base, source, f"/routes/{i}/{key}")
            resp = entry.get("response")
            refs = {"": resp} if isinstance(resp, str) else dict(resp or {})
            for status, ref in refs.items():
                _schema_ref(ref, store, base, source,
                            f"/routes/{i}/response" + (f"/{status}" if status else ""))
        registry = store.registry()
        fast = fast_registry(store)
        compiler = Compiler(store)
        extractor = OpenAPIRoutes(store, compiler, registry, fast)
        for uri in openapi_uris:
            doc = store.documents[uri]
            if not isinstance(doc, Mapping) or "openapi" not in doc:
                raise SchemaError("not an OpenAPI document (no 'openapi' field)",
                                  source=store.names[uri])
            for route in extractor.routes(uri):
                if route.has_plan:
                    self.routes.add(route)
        for i, entry in enumerate(routes_raw):
            self.routes.add(_explicit_route(entry, store, compiler, (registry, fast), base,
                                            source, f"/routes/{i}"))


def _path(base: Path, entry: str, source: str, pointer: str) -> Path:
    p = Path(entry)
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise ConfigError(f"file or directory {entry!r} does not exist", source=source,
                          pointer=pointer)
    return p


def _schema_ref(ref: str, store: SchemaStore, base: Path, source: str,
                pointer: str) -> tuple[str, str]:
    file, _, frag = ref.partition("#")
    p = _path(base, file, source, pointer)
    uri = p.resolve().as_uri()
    if uri not in store.documents:
        store.add_file(p)
    try:
        store.at(uri, frag)
    except (KeyError, IndexError, ValueError, TypeError):
        raise ConfigError(f"schema reference {ref!r} points at nothing", source=source,
                          pointer=pointer) from None
    return uri, frag


def _explicit_route(entry: Mapping[str, Any], store: SchemaStore, compiler: Compiler,
                    registries: tuple[Any, Any], base: Path, source: str,
                    pointer: str) -> Route:
    method, _, template = str(entry["route"]).partition(" ")
    route = Route(method, template.strip())

    def body(ref: str, ptr: str, name: str) -> Body:
        uri, frag = _schema_ref(ref, store, base, source, ptr)
        return Body(compiler.compile(uri, frag, name),
                    Validator(store, uri, frag, registries[0], registries[1]))

    if "request" in entry:
        route.request = body(entry["request"], f"{pointer}/request", f"{entry['route']} request")
    resp = entry.get("response")
    if isinstance(resp, str):
        route.responses["default"] = body(resp, f"{pointer}/response",
                                          f"{entry['route']} response")
    elif isinstance(resp, Mapping):
        for status, ref in resp.items():
            route.responses[status_key(status)] = body(
                ref, f"{pointer}/response/{status}", f"{entry['route']} response {status}")
    if "query" in entry:
        uri, frag = _schema_ref(entry["query"], store, base, source, f"{pointer}/query")
        route.query = compiler.compile(uri, frag, "query")
    return route


def _rule(raw: Mapping[str, Any], source: str, pointer: str) -> Rule:
    def pick(*names: str) -> list[str]:
        for n in names:
            if n in raw:
                return _as_list(raw[n])
        return []

    def at(i: int, *names: str) -> str:
        """The pointer of entry ``i`` of the first of ``names`` given (a list or one value)."""
        n = next(n for n in names if n in raw)
        return f"{pointer}/{n}" + (f"/{i}" if isinstance(raw[n], list) else "")

    cats = []
    for i, c in enumerate(pick("categories", "category")):
        try:
            cats.append(resolve(c))
        except UnknownCategoryError:
            raise ConfigError(f"unknown data category {c!r}", source=source,
                              pointer=at(i, "categories", "category")) from None
    uses = []
    for i, u in enumerate(pick("uses", "use")):
        try:
            uses.append(resolve_use(u))
        except ValueError as e:
            raise ConfigError(str(e), source=source, pointer=at(i, "uses", "use")) from None
    try:
        return Rule(
            id=raw["id"], action=cast(Action, raw["action"]), categories=tuple(cats),
            sinks=tuple(cast(Sink, s) for s in pick("sinks", "sink")), uses=tuple(uses),
            environments=tuple(pick("environments", "environment")),
            routes=tuple(pick("routes", "route")),
            event_types=tuple(pick("event_types", "event_type")),
            subjects=tuple(raw.get("subjects", ())), tiers=tuple(raw.get("tiers", ())),
            requires_opt_in=bool(raw.get("requires_opt_in", False)),
            reason=raw.get("reason", "policy.rule"),
        )
    except ValueError as e:
        raise ConfigError(str(e), source=source, pointer=pointer) from None


def _hasher(raw: Mapping[str, Any], env: Mapping[str, str], source: str,
            needed: str) -> Hasher | None:
    """``needed``: what uses the hash action (see :meth:`Config._hash_user`), or ``""``."""
    var = raw.get("key_env", "PIIMW_HASH_KEY")
    if not env.get(var):
        if needed:
            raise ConfigError(f"action 'hash' is used (by {needed}) but the environment "
                              f"variable {var} holding the secret key is not set", source=source,
                              pointer="/hash/key_env")
        return None
    return _hasher_from(var, raw.get("key_id"), env, source, "/hash")


def _hasher_from(var: str, key_id: str | None, env: Mapping[str, str], source: str,
                 pointer: str) -> Hasher:
    """``Hasher.from_env``, its error naming the settings file and where the key is named."""
    try:
        return Hasher.from_env(var, key_id, environ=env)
    except ConfigError as e:
        raise ConfigError(e.reason, source=source, pointer=pointer) from None


def _previous_hashers(raw: Mapping[str, Any], env: Mapping[str, str],
                      source: str) -> tuple[Hasher, ...]:
    """One hasher per ``hash.previous_key_envs`` entry; each variable must be set."""
    out: list[Hasher] = []
    for i, var in enumerate(raw.get("previous_key_envs", ())):
        pointer = f"/hash/previous_key_envs/{i}"
        if not env.get(var):
            raise ConfigError(f"the environment variable {var} holding a previous hash key is "
                              "not set", source=source, pointer=pointer)
        out.append(_hasher_from(var, None, env, source, pointer))
    return tuple(out)


def _discovery(raw: Mapping[str, Any] | None, cfg: Config) -> DiscoverySampler | None:
    """The off-request-path NER sampler (``[discovery]``); the model loads only if enabled."""
    if not raw or not raw.get("enabled", True):
        return None
    from piimw.discover import DiscoverySampler, NERDetector, TaggerDetector

    detector: NERDetector
    if raw.get("detector") == "presidio":
        from piimw.discover.presidio import PresidioDetector

        detector = PresidioDetector()
    else:
        detector = TaggerDetector()
    return DiscoverySampler(detector, rate=raw.get("rate", 0.01),
                            queue_size=raw.get("queue_size", 1000),
                            max_chars=raw.get("max_chars", 20000), duty=raw.get("duty", 0.25),
                            audit=cfg.audit, environment=cfg.environment)
