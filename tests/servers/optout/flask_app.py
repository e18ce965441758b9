"""Flask test app: ``gunicorn flask_app:app``. Sign-in is Flask-Login's session key, set by
``POST /login/<uid>``; piimw reads it from the signed session cookie."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request, session
from flask.typing import ResponseReturnValue
from optout_common import PID_HEADER, echo, load_config, pid

from piimw.contrib.flask import PIIMW

app = Flask(__name__)
app.secret_key = os.environ.get("OPTOUT_SECRET_KEY", "optout-test-only-secret-key")


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(ok=True)


@app.post("/login/<uid>")
def login(uid: str) -> ResponseReturnValue:
    session["_user_id"] = uid  # what flask_login.login_user() stores
    return jsonify(user=uid)


@app.post("/echo")
def echo_view() -> ResponseReturnValue:
    return jsonify(echo(request.environ["piimw"], request.get_json(silent=True)))


@app.after_request
def add_pid(response: Response) -> Response:
    response.headers[PID_HEADER] = pid()
    return response


PIIMW(app, config=load_config())
