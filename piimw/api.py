"""The functions most applications need: scrub a document or a text, ask what is allowed.

Inside a request handled by piimw's middleware they use that request's configuration,
consent and known values; outside one, the configuration given to :func:`configure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import count
from pathlib import Path
from typing import Any

from piimw.config import Config
from piimw.consent import DEFAULT, Consent
from piimw.engine import Result
from piimw.exchange import Exchange, current
from piimw.findings import Sink
from piimw.plan import Plan
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore

_default_config: Config | None = None
_inline = count(1)


def configure(config: Config | Mapping[str, Any] | str | Path | None) -> Config:
    """Set the configuration used outside requests (and by adapters given none)."""
    global _default_config
    if config is None:
        _default_config = None
        return default_config()
    cfg = _coerce(config)
    _default_config = cfg
    return cfg


def _coerce(config: Config | Mapping[str, Any] | str | Path) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, Path)):
        return Config.from_file(config)
    return Config.from_dict(config)


def default_config() -> Config:
    global _default_config
    if _default_config is None:
        _default_config = Config()
    return _default_config


def _context(config: Config | None, consent: Consent | None) -> tuple[Config, Consent,
                                                                      Exchange | None]:
    ex = current()
    cfg = config or (ex.config if ex is not None else None) or default_config()
    con = consent if consent is not None else (ex.consent if ex is not None else DEFAULT)
    return cfg, con, ex


def compile_schema(schema: Mapping[str, Any] | str | Path, *, name: str | None = None) -> Plan:
    """Compile one JSON Schema (a dict or a file) into a :class:`~piimw.plan.Plan`."""
    store = SchemaStore()
    if isinstance(schema, (str, Path)):
        uri = store.add_file(schema)
    else:
        uri = store.add_document(dict(schema), f"urn:piimw:inline:{next(_inline)}",
                                 name or "<inline schema>")
    return Compiler(store).compile(uri, "", name or "")


def scrub(
    document: Any,
    *,
    plan: Plan | None = None,
    sink: Sink = "log",
    consent: Consent | None = None,
    config: Config | None = None,
    route: str | None = None,
    event_type: str | None = None,
) -> Result:
    """Return a scrubbed copy of ``document`` for ``sink`` and the findings (never values)."""
    cfg, con, ex = _context(config, consent)
    known = ex.known if ex is not None else None
    return cfg.scrubber.scrub(document, plan, sink=sink, consent=con, route=route,
                              event_type=event_type, known=known)


def scrub_text(
    text: str,
    *,
    sink: Sink = "log",
    consent: Consent | None = None,
    config: Config | None = None,
    event_type: str | None = None,
) -> Result:
    """Find and treat PII in free text: detectors plus the current request's known values."""
    cfg, con, ex = _context(config, consent)
    known = ex.known if ex is not None else None
    route = ex.route_template if ex is not None else None
    value, findings = cfg.scrubber.scrub_text(text, sink=sink, consent=con, known=known,
                                              route=route, event_type=event_type)
    return Result(value, findings)


def allows(use: str, *, consent: Consent | None = None) -> bool:
    """May data be processed for ``use`` in the current request? (False if opted out.)"""
    _, con, _ = _context(None, consent)
    return con.opted_out_of(use) is None
