"""A small shop API (signup, profile, orders, support) protected by piimw.

Run it with ``uvicorn example_apps.starlette_app.app:app`` or
``python -m example_apps.starlette_app``. The handlers are deliberately careless in the ways
real ones are: ``/signup`` logs the whole payload and ``/support`` raises an exception that
quotes the customer's email. piimw's plans (from ``openapi.json``) and policy (``piimw.toml``)
decide what reaches the handler, the client and the logs.

Set ``PIIMW_EXAMPLE_RECORD=/some/file.jsonl`` to append every request body exactly as a handler
received it (after piimw) to that file; ``piimw demo`` uses it to show what the app saw.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import piimw
import piimw.logging
from piimw.contrib.starlette import PIIMiddleware

HERE = Path(__file__).resolve().parent
CONFIG_PATH = HERE / "piimw.toml"
RECORD_ENV = "PIIMW_EXAMPLE_RECORD"

logger = logging.getLogger("shop")

USERS: dict[int, dict[str, Any]] = {}
ORDERS: dict[int, dict[str, Any]] = {}
_ids = itertools.count(1)


async def received(request: Request) -> Any:
    """The body exactly as this handler got it; also recorded when the demo asks for it."""
    body = await request.body()
    path = os.environ.get(RECORD_ENV)
    if path:
        line = json.dumps({"method": request.method, "path": request.url.path,
                           "body": body.decode("utf-8", "replace")})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return json.loads(body) if body else None


async def signup(request: Request) -> Response:
    payload = await received(request)
    logger.info("signup %s", payload)  # careless: the whole payload goes to the log
    user_id = next(_ids)
    user = {"id": user_id, **{k: v for k, v in payload.items() if k != "password"}}
    USERS[user_id] = user
    return JSONResponse(user, status_code=201)


async def get_user(request: Request) -> Response:
    user = USERS.get(request.path_params["user_id"])
    if user is None:
        return JSONResponse({"detail": "no such user"}, status_code=404)
    return JSONResponse(user)


async def create_order(request: Request) -> Response:
    payload = await received(request)
    order_id = next(_ids)
    order = {"id": order_id, **payload}
    ORDERS[order_id] = order
    logger.info("order %d placed with %d item(s)", order_id, len(payload["items"]))
    return JSONResponse(order, status_code=201)


async def get_order(request: Request) -> Response:
    order = ORDERS.get(request.path_params["order_id"])
    if order is None:
        return JSONResponse({"detail": "no such order"}, status_code=404)
    return JSONResponse(order)


async def support(request: Request) -> Response:
    payload = await received(request)
    # careless: the exception message quotes the customer, and ends up in the error log
    raise RuntimeError(f"mail relay refused the ticket from {payload['email']}")


async def about(request: Request) -> Response:
    """Not in the OpenAPI document: piimw streams it through untouched."""
    return JSONResponse({"service": "example shop", "privacy_contact": "privacy@example.com"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def configure_logging() -> None:
    """The shop's log lines go to stderr; piimw's filter goes on every handler, now and later.

    ``install`` also catches the handlers uvicorn or gunicorn create after this import.
    """
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    piimw.logging.install()


def create_app(config: piimw.Config | str | Path = CONFIG_PATH) -> Starlette:
    # The same configuration outside requests: server tracebacks get the same log policy.
    cfg = piimw.configure(config)
    configure_logging()
    return Starlette(
        routes=[
            Route("/signup", signup, methods=["POST"]),
            Route("/users/{user_id:int}", get_user, methods=["GET"]),
            Route("/orders", create_order, methods=["POST"]),
            Route("/orders/{order_id:int}", get_order, methods=["GET"]),
            Route("/support", support, methods=["POST"]),
            Route("/about", about, methods=["GET"]),
            Route("/healthz/{mark}", healthz, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(PIIMiddleware, config=cfg)],
    )


app = create_app()
