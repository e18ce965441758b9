"""Starlette test app: ``uvicorn starlette_app:app``. Sign-in is Starlette's
``AuthenticationMiddleware`` with a backend that trusts an ``X-Test-User`` header."""

from __future__ import annotations

from optout_common import PID_HEADER, echo, load_config, pid
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from piimw.contrib.starlette import PIIMiddleware


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        uid = conn.headers.get("x-test-user")
        if not uid:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(uid)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True}, headers={PID_HEADER: pid()})


async def echo_view(request: Request) -> Response:
    body = await request.json()
    return JSONResponse(echo(request.scope["piimw"], body), headers={PID_HEADER: pid()})


app = Starlette(
    routes=[Route("/healthz", healthz), Route("/echo", echo_view, methods=["POST"])],
    middleware=[
        # Outermost first: the user is known before piimw runs.
        Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
        Middleware(PIIMiddleware, config=load_config()),
    ],
)
