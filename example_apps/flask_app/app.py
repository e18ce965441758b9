"""A small shop API (signup, profile, orders, support) protected by piimw, in Flask.

The handlers are careless the way real ones are: ``/signup`` logs the whole payload and
``/support`` raises an exception that quotes the customer's email. piimw's plans (from
``openapi.json``) and policy (``piimw.toml``) decide what reaches the handler, the client
and the logs. ``/about`` and ``/healthz`` are not in the OpenAPI document and pass through.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, jsonify, request, session
from flask.typing import ResponseReturnValue

import piimw
import piimw.logging
from piimw.contrib.flask import DEFAULT_SESSION_KEY, PIIMW

HERE = Path(__file__).resolve().parent

logger = logging.getLogger("shop")
shop = Blueprint("shop", __name__)
# One extension object for every app the factory makes; per-app state is in app.extensions.
pii = PIIMW()

USERS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "email": "demo.user@example.com", "name": "Demo User",
        "phone": "+1 415 555 0100", "card": "4242 4242 4242 4242"},
}
ORDERS: dict[int, dict[str, Any]] = {}
_ids = itertools.count(2)


def _json() -> dict[str, Any]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400)
    return payload


@shop.post("/signup")
def signup() -> ResponseReturnValue:
    payload = _json()
    logger.info("signup %s", payload)  # careless: the whole payload goes to the log
    user = {"id": next(_ids), **{k: v for k, v in payload.items() if k != "password"}}
    USERS[user["id"]] = user
    return jsonify(user), 201


@shop.get("/users/<int:user_id>")
def get_user(user_id: int) -> ResponseReturnValue:
    user = USERS.get(user_id)
    if user is None:
        return jsonify(detail="no such user"), 404
    return jsonify(user)


@shop.get("/orders")
def list_orders() -> ResponseReturnValue:
    email = request.args.get("email")
    ids = {u["id"] for u in USERS.values() if email is None or u.get("email") == email}
    return jsonify(orders=[o for o in ORDERS.values() if o.get("user_id") in ids])


@shop.post("/orders")
def create_order() -> ResponseReturnValue:
    payload = _json()
    order = {"id": next(_ids), "user_id": 1, **payload}
    ORDERS[order["id"]] = order
    logger.info("order %d placed with %d item(s)", order["id"], len(payload["items"]))
    return jsonify(order), 201


@shop.get("/orders/<int:order_id>")
def get_order(order_id: int) -> ResponseReturnValue:
    order = ORDERS.get(order_id)
    if order is None:
        return jsonify(detail="no such order"), 404
    return jsonify(order)


@shop.post("/support")
def support() -> ResponseReturnValue:
    payload = _json()
    # careless: the exception message quotes the customer, and ends up in the error log
    raise RuntimeError(f"mail relay refused the ticket from {payload['email']}")


@shop.post("/privacy/opt-out")
def opt_out() -> ResponseReturnValue:
    """Remember an opt-out in the session: ``{"uses": ["marketing"]}``, or all if none given."""
    payload = request.get_json(silent=True) or {}
    session[DEFAULT_SESSION_KEY] = payload.get("uses") or True
    return "", 204


@shop.get("/about")
def about() -> ResponseReturnValue:
    """Not in the OpenAPI document: piimw streams it through untouched."""
    return jsonify(service="example shop", privacy_contact="privacy@example.com")


@shop.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(ok=True)


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    """The app factory ``flask --app example_apps.flask_app run`` finds and calls."""
    app = Flask(__name__)
    app.config.from_mapping(
        # The session carries the opt-out flag; set a real secret outside development.
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", "dev-only-not-a-secret"),
        PIIMW=str(HERE / "piimw.toml"),
    )
    if settings:
        app.config.from_mapping(settings)
    app.register_blueprint(shop)
    state = pii.init_app(app)
    # The same configuration outside requests: server tracebacks get the same log policy.
    piimw.configure(state.config)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # piimw's log filter on every handler, now and later: the shop's log, Flask's tracebacks,
    # the dev server's request lines, gunicorn's error log.
    piimw.logging.install()
    return app
