"""The matrix app in Flask. ``gunicorn "matrix_apps.flask_app:server_app()"``."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from matrix_apps.common import ROUTES, config, handle, server_logging
from piimw.contrib.flask import PIIMW


def endpoint() -> ResponseReturnValue:
    body = handle(request.path, request.get_json(), request.args,
                  request.headers.get("Authorization"))
    return jsonify(body), 201


def healthz(mark: str = "") -> ResponseReturnValue:
    return jsonify(ok=True)


def create_app(*, debug: bool, protect: bool = True) -> Flask:
    app = Flask(__name__)
    app.debug = debug  # debug: PROPAGATE_EXCEPTIONS defaults to on, the client gets the raise
    app.config["PIIMW"] = config()
    for path in ROUTES:
        app.add_url_rule(path, path, endpoint, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/healthz/<mark>", "mark", healthz)
    if protect:
        PIIMW(app)
    return app


def server_app() -> Flask:
    server_logging()
    return create_app(debug=False)
