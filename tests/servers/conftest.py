"""Real servers in child processes, for the one real-server test each adapter gets.

``start_server(cmd, port, env=..., cwd=...)`` (a session fixture, so module-scoped server
fixtures can use it) runs ``cmd`` in its own process group, waits
until ``http://127.0.0.1:<port><ready_path>`` answers (any HTTP status), and on exit kills the
whole group (gunicorn's workers too). Output goes to a file, never a pipe, so a chatty server
cannot block on a full pipe; ``server.output()`` reads it. If the server dies or never answers,
the test fails with its output; if the test body fails, the output is printed so pytest shows it.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from piimw._process import free_port, stop_group

REPO = Path(__file__).resolve().parents[2]

@dataclass
class Server:
    """A running server: where to reach it and what it has printed so far."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextmanager
def start_server(
    cmd: Sequence[str],
    port: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    ready_path: str = "/",
    timeout: float = 30.0,
    log_path: Path | None = None,
) -> Iterator[Server]:
    """Run ``cmd`` (which must listen on 127.0.0.1:``port``) until the ``with`` block ends.

    Without ``port`` a free one is picked (and another, twice, if the server dies before
    answering, e.g. because the port was taken meanwhile); ``{port}`` in ``cmd`` is replaced by
    the port. ``env`` is added to a copy of this environment; the repository root is put on
    ``PYTHONPATH`` so ``example_apps`` imports. ``cwd`` defaults to the repository root.
    """
    if os.name != "posix":
        pytest.skip("real-server tests kill process groups: POSIX only")
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    owned = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="piimw-server-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    attempts = 3 if port is None else 1
    try:
        for attempt in range(attempts):
            chosen = free_port() if port is None else port
            argv = [arg.replace("{port}", str(chosen)) for arg in cmd]
            server = _spawn(argv, chosen, full_env, cwd or REPO, log_path)
            try:
                problem = _wait(server, ready_path, timeout)
                if problem is not None:
                    if attempt + 1 < attempts and server.process.poll() is not None:
                        continue
                    pytest.fail(f"{problem}:\n$ {' '.join(argv)}\n{server.output()}",
                                pytrace=False)
                try:
                    yield server
                except BaseException:
                    sys.stdout.write(f"--- server output ($ {' '.join(argv)}) ---\n"
                                     f"{server.output()}\n")
                    raise
                return
            finally:
                stop_group(server.process)
    finally:
        if owned:
            log_path.unlink(missing_ok=True)


def _spawn(argv: list[str], port: int, env: Mapping[str, str], cwd: str | os.PathLike[str],
           log_path: Path) -> Server:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Server(proc, port, log_path)


def _wait(server: Server, ready_path: str, timeout: float) -> str | None:
    """None once the server answers; else why it did not."""
    deadline = time.monotonic() + timeout
    while not _answers(server.port, ready_path):
        if server.process.poll() is not None:
            return f"server exited with status {server.process.returncode} before answering"
        if time.monotonic() > deadline:
            return f"server did not answer on port {server.port} within {timeout:.0f}s"
        time.sleep(0.05)
    if server.process.poll() is not None:  # something else answered on that port
        return f"server exited with status {server.process.returncode}; port {server.port} " \
               "is someone else's"
    return None


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    return free_port()


@pytest.fixture(name="start_server", scope="session")
def start_server_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., AbstractContextManager[Server]]:
    """``with start_server([...], port) as server:``; logs land in a pytest temp directory."""
    logs = tmp_path_factory.mktemp("server-logs")

    def start(cmd: Sequence[str], port: int | None = None,
              **kwargs: object) -> AbstractContextManager[Server]:
        if port is None:
            port = free_port()
        kwargs.setdefault("log_path", logs / f"server-{port}.log")
        return start_server(cmd, port, **kwargs)  # type: ignore[arg-type]

    return start
