"""``piimw demo``: the Starlette example shop behind piimw, on a real server, in a few seconds.

Starts ``example_apps/starlette_app`` with uvicorn on a free 127.0.0.1 port, sends each request
twice (without a signal, and with ``Sec-GPC: 1``) and prints side by side what the client sent,
what the handler received (the app records the bodies it gets), what the response carried and
what reached the server's log. Then stops the server. All values shown are made-up samples.
"""

from __future__ import annotations

import argparse
import http
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piimw._process import free_port, stop_group
from piimw.cli import Command

APP = "example_apps.starlette_app.app:app"
RECORD_ENV = "PIIMW_EXAMPLE_RECORD"
START_TIMEOUT = 20.0
LOG_TIMEOUT = 5.0

SIGNUP = {
    "email": "jane.doe@example.com",
    "name": "Jane Doe",
    "phone": "+1 415 555 0100",
    "password": "correct horse battery",
    "address": {"street": "1 Main Street", "city": "Springfield", "postal_code": "94105",
                "country": "US"},
}
ORDER = {"card": "4242 4242 4242 4242", "items": [{"sku": "TEA-01", "qty": 2}]}
SUPPORT = {"email": "jane.doe@example.com", "message": "My parcel never arrived."}

LEGEND = """\
How to read this:
  [REDACTED:x]   policy removed a value of category x (logs get no raw PII by default)
  j***@...       masked: piimw.toml lets emails reach logs masked; the Order schema masks cards
  missing field  dropped: the phone's schema use is "marketing", and Sec-GPC: 1 opts out of it
                 (before the handler sees it, and again in the response, with Vary: Sec-GPC)
  /about         not in openapi.json: streamed through untouched
"""


@dataclass
class Observed:
    """One request seen from all four sides."""

    sent: str
    received: list[str]
    response: list[str]
    log: list[str] = field(default_factory=list)


class DemoError(Exception):
    """The example server could not be started or answered unexpectedly."""


def example_root() -> Path | None:
    """The directory holding ``example_apps`` (a source checkout or editable install)."""
    import piimw

    for root in (Path(piimw.__file__).resolve().parent.parent, Path.cwd()):
        if (root / "example_apps" / "starlette_app" / "app.py").is_file():
            return root
    return None


class Server:
    """The example app under uvicorn in a child process; its log goes to a file we tail."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.log_path = workdir / "server.log"
        self.record_path = workdir / "received.jsonl"
        self.record_path.touch()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._record_offset = 0
        self._marks = 0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            if self._spawn():
                return
        raise DemoError("the example server did not start:\n" + self.log_text())

    def _spawn(self) -> bool:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root),
                                                          env.get("PYTHONPATH")]))
        env[RECORD_ENV] = str(self.record_path)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1",
               "--port", str(self.port), "--lifespan", "on", "--log-level", "info"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=os.name == "posix")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, _ = self.request("GET", "/healthz")
                if status == 200:
                    self._log_offset = self.log_path.stat().st_size
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise DemoError("the example server did not answer in time:\n" + self.log_text())

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None,
                gpc: bool = False) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if gpc:
            req.add_header("Sec-GPC", "1")
        try:
            with self._opener.open(req, timeout=10) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def observe(self, method: str, path: str, body: Any = None, gpc: bool = False) -> Observed:
        status, headers, raw = self.request(method, path, body, gpc)
        sent = f"{method} {path}" + (" + Sec-GPC: 1" if gpc else "")
        if body is not None:
            sent += "\n" + _show(body)
        received = [_show_text(r["body"]) or "(no body)" for r in self._new_records()]
        phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ \
            else ""
        head = f"{status} {phrase}"
        if "vary" in headers:
            head += f"  Vary: {headers['vary']}"
        response = [head, _show_text(raw.decode("utf-8", "replace"))]
        if not received:
            received = ["(no body)" if body is None else "(handler not called)"]
        return Observed(sent, received, response, self._new_log())

    def _new_records(self) -> list[dict[str, Any]]:
        with open(self.record_path, "rb") as f:
            f.seek(self._record_offset)
            data = f.read()
        self._record_offset += len(data)
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]

    def _new_log(self) -> list[str]:
        """Log lines written for the last request: up to the access line of a marker request.

        Handlers log before they answer and uvicorn logs an exception before it reads the next
        request, so once the marker's line is in the file, so is everything before it.
        """
        self._marks += 1
        marker = f"/healthz/mark-{self._marks} "
        self.request("GET", marker.strip())
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
            if marker in text or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        lines = text.splitlines(keepends=True)
        taken: list[str] = []
        for line in lines:
            self._log_offset += len(line.encode("utf-8"))
            if marker in line:
                break
            taken.append(line.rstrip("\n"))
        return _condense(taken)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _show_text(text: str) -> str:
    try:
        return _show(json.loads(text))
    except ValueError:
        return text.strip()


def _condense(lines: list[str]) -> list[str]:
    """Keep log lines readable: one line per traceback, uvicorn's padding squeezed."""
    out: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and (line[:1].isspace() or not line.strip()):
            continue
        if in_traceback:
            in_traceback = False
            line = "  raised " + line
        out.append(re.sub(r"^([A-Z]+):\s+", r"\1: ", line))
    return out or ["(nothing)"]


# -- output ---------------------------------------------------------------------------------
ROWS = (("client sent", "sent"), ("handler got", "received"), ("response", "response"),
        ("log", "log"))


def _wrap(text: str | list[str], width: int) -> list[str]:
    parts = text if isinstance(text, list) else text.split("\n")
    out: list[str] = []
    for part in parts:
        out.extend(textwrap.wrap(part, width, break_long_words=True, break_on_hyphens=False,
                                 subsequent_indent="  ") or [""])
    return out


def render(title: str, left: Observed, right: Observed, width: int) -> str:
    label_w = 12
    col = max(24, (width - label_w - 6) // 2)
    rule = "-" * label_w + "-+-" + "-" * col + "-+-" + "-" * col
    out = [f"\n{title}", f"{'':<{label_w}} | {'no signal':<{col}} | with Sec-GPC: 1", rule]
    for label, attr in ROWS:
        a = _wrap(getattr(left, attr), col)
        b = _wrap(getattr(right, attr), col)
        for i in range(max(len(a), len(b))):
            name = label if i == 0 else ""
            cell_a = a[i] if i < len(a) else ""
            cell_b = b[i] if i < len(b) else ""
            out.append(f"{name:<{label_w}} | {cell_a:<{col}} | {cell_b}".rstrip())
        out.append(rule)
    return "\n".join(out)


def scenarios(server: Server) -> Iterator[tuple[str, Observed, Observed]]:
    plain = server.observe("POST", "/signup", SIGNUP)
    gpc = server.observe("POST", "/signup", SIGNUP, gpc=True)
    yield "1. Sign up (the handler logs its whole payload)", plain, gpc
    user_id = json.loads(plain.response[1]).get("id", 1)
    yield ("2. Read the first account back",
           server.observe("GET", f"/users/{user_id}"),
           server.observe("GET", f"/users/{user_id}", gpc=True))
    yield ("3. Place an order (the Order schema masks the card in responses)",
           server.observe("POST", "/orders", ORDER),
           server.observe("POST", "/orders", ORDER, gpc=True))
    yield ("4. Contact support (the handler raises an exception quoting the email)",
           server.observe("POST", "/support", SUPPORT),
           server.observe("POST", "/support", SUPPORT, gpc=True))
    yield ("5. An unplanned route",
           server.observe("GET", "/about"), server.observe("GET", "/about", gpc=True))


@contextmanager
def running(root: Path) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="piimw-demo-") as tmp:
        server = Server(root, Path(tmp))
        try:
            server.start()
            yield server
        finally:
            server.stop()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=0,
                        help="output width in columns (default: the terminal's)")


def run(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("piimw demo needs Starlette and uvicorn: pip install 'piimw[starlette]' uvicorn",
              file=sys.stderr)
        return 2
    root = example_root()
    if root is None:
        print("piimw demo: example_apps/ not found; run it from a piimw source checkout",
              file=sys.stderr)
        return 2
    width = args.width or shutil.get_terminal_size((120, 24)).columns
    width = max(80, min(width, 200))
    try:
        with running(root) as server:
            print(f"piimw demo: example_apps/starlette_app behind piimw, uvicorn on "
                  f"{server.base}")
            for title, left, right in scenarios(server):
                print(render(title, left, right, width), flush=True)
    except DemoError as e:
        print(f"piimw demo: {e}", file=sys.stderr)
        return 1
    print("\n" + LEGEND, end="")
    return 0


COMMAND = Command("demo", "run the example Starlette app behind piimw and show, side by side, "
                  "what the client, the handler, the response and the log saw", _arguments, run)
