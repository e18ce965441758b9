"""What the three opt-out test apps share: the piimw configuration and the echo payload.

Not a test module: the apps import it from this directory (the servers run with it as their
working directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from piimw.config import Config
from piimw.exchange import Exchange

HERE = Path(__file__).resolve().parent
CONFIG_PATH = HERE / "piimw.toml"
PREFIX_ENV = "OPTOUT_KEY_PREFIX"
PID_HEADER = "X-Worker-Pid"


def load_config() -> Config:
    """``piimw.toml``, with the registry key prefix of this test run (``$OPTOUT_KEY_PREFIX``)."""
    config = Config.from_file(CONFIG_PATH)
    prefix = os.environ.get(PREFIX_ENV)
    if not prefix:
        return config
    raw = dict(config.raw)
    raw["registry"] = {**raw["registry"], "key_prefix": prefix}
    return Config.from_dict(raw, base_dir=HERE, source=str(CONFIG_PATH))


def pid() -> str:
    return str(os.getpid())


def echo(exchange: Exchange, body: Any) -> dict[str, Any]:
    """What the handler received (field names only) and, for diagnosis, the request's consent
    and this process's registry cache counters."""
    registry = exchange.config.registry
    return {
        "received": sorted(body) if isinstance(body, dict) else None,
        "opted_out": sorted(exchange.consent.opted_out_uses),
        "hits": registry.hits if registry is not None else None,
        "misses": registry.misses if registry is not None else None,
    }
