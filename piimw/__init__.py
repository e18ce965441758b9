"""piimw: stop personal data leaking out of Python web applications.

Core API (no web framework needed)::

    import piimw
    plan = piimw.compile_schema({"type": "object",
                                 "properties": {"email": {"type": "string", "x-pii": "email"}}})
    piimw.scrub({"email": "jane@example.com"}, plan=plan, sink="log").value
    # {'email': '[REDACTED:email]'}
"""

from __future__ import annotations

from piimw.api import allows, compile_schema, configure, default_config, scrub, scrub_text
from piimw.config import Config
from piimw.consent import Consent
from piimw.engine import Result, Scrubber
from piimw.errors import ConfigError, PIIMWError, SchemaError
from piimw.events import BlockedEvent, scrub_event
from piimw.exchange import Exchange, current
from piimw.findings import Finding
from piimw.plan import Plan
from piimw.policy import Decision, Policy, Rule

__version__ = "0.1.0.dev0"

__all__ = [
    "BlockedEvent",
    "Config",
    "ConfigError",
    "Consent",
    "Decision",
    "Exchange",
    "Finding",
    "PIIMWError",
    "Plan",
    "Policy",
    "Result",
    "Rule",
    "SchemaError",
    "Scrubber",
    "__version__",
    "allows",
    "compile_schema",
    "configure",
    "current",
    "default_config",
    "scrub",
    "scrub_event",
    "scrub_text",
]
