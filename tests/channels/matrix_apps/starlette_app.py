"""The matrix app in Starlette. ``uvicorn matrix_apps.starlette_app:app`` (``MATRIX_DEBUG=1``)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from matrix_apps.common import ROUTES, config, handle, server_logging
from piimw.contrib.starlette import PIIMiddleware


async def endpoint(request: Request) -> Response:
    payload = await request.json()
    body = handle(request.url.path, payload, request.query_params,
                  request.headers.get("authorization"))
    return JSONResponse(body, status_code=201)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app(*, debug: bool, protect: bool = True) -> Starlette:
    middleware = [Middleware(PIIMiddleware, config=config())] if protect else []
    routes = [Route(path, endpoint, methods=["POST"]) for path in ROUTES]
    return Starlette(debug=debug, routes=[*routes, Route("/healthz", healthz),
                                      Route("/healthz/{mark}", healthz)],
                     middleware=middleware)


def server_app() -> Starlette:
    server_logging()
    return create_app(debug=os.environ.get("MATRIX_DEBUG") == "1")


if os.environ.get("MATRIX_SERVER") == "starlette":
    app = server_app()
