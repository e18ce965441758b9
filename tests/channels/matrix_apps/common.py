"""What the three matrix apps share: piimw's configuration and the careless handler bodies."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).resolve().parent
ROUTES = ("/signup", "/boom/name", "/boom/db", "/boom/schema")

logger = logging.getLogger("matrix")
logger.setLevel(logging.INFO)


def config() -> dict[str, Any]:
    """piimw settings: each route's JSON body and query parameters are tagged (absolute paths)."""
    return {"routes": [{"route": f"POST {route}", "request": str(HERE / "payload.json"),
                        "query": str(HERE / "query.json")} for route in ROUTES]}


class UniqueViolation(Exception):
    """Shaped like psycopg's ``UniqueViolation``: the message quotes the duplicate key."""


CARD_SCHEMA = {"type": "object", "properties": {"card": {"type": "string", "maxLength": 4}}}


def handle(path: str, payload: Mapping[str, Any], query: Mapping[str, str],
           auth: str | None) -> dict[str, Any]:
    """The handler body every framework runs; returns the (non-echoing) response body."""
    if path == "/signup":
        logger.info("signup %s", payload)
        logger.info("signup query=%s auth=%s", dict(query), auth)
        return {"ok": True}
    if path == "/boom/name":
        raise RuntimeError(f"no account for {payload['name']} "
                           f"(asked by {query.get('who')}, credentials {auth})")
    if path == "/boom/db":
        raise UniqueViolation('duplicate key value violates unique constraint "users_email_key"'
                              f"\nDETAIL:  Key (email)=({payload['email']}) already exists.")
    if path == "/boom/schema":
        jsonschema.validate(dict(payload), CARD_SCHEMA)
    raise AssertionError(f"unexpected route {path}")


def server_logging() -> None:
    """For real servers: piimw's filter everywhere, app lines to stderr (the server's log)."""
    import piimw
    import piimw.logging

    piimw.configure(config())
    piimw.logging.install()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
