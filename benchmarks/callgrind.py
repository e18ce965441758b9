"""Instructions per request of a real server, counted by valgrind's callgrind.

Wall-clock throughput on a shared machine moves by ±25% from run to run; the number of
instructions a server executes for one request does not (the same to within 0.3% run after
run, whatever else the machine is doing). ``bench_http.py --instructions`` uses this module:
each server runs under ``valgrind --tool=callgrind`` (about 50 times slower), is warmed up,
its counters are zeroed with ``callgrind_control -z``, a fixed number of requests is sent
one after the other on one keep-alive connection, and ``callgrind_control -d`` dumps the count.

Instructions are a proxy for time, not time: cache misses and branch mispredictions are not
counted, so a change that saves instructions but touches more memory can look better here
than under load. Use it to compare designs and to confirm what the throughput rows suggest.
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import subprocess
import time
from pathlib import Path

#: gunicorn's sync worker is killed when silent for longer than its timeout (30 s): under
#: valgrind, importing Django or Flask can take that long.
GUNICORN_ARGS = "--timeout 0"


def available() -> str | None:
    """None if valgrind and callgrind_control are installed, else what is missing."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    return None if not missing else (", ".join(missing) + " not found (apt-get install -y "
                                     "valgrind)")


def wrapper(out: Path) -> list[str]:
    """Command prefix: run under callgrind, one output file per process (``%p``)."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
            "--dump-instr=no", "--dump-line=no"]


def serving_pid(pid: int) -> int:
    """The process that answers requests: a pre-fork server's only worker, else ``pid``."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if len(children) == 1 else pid


def _control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True,
                   timeout=120)


def _total(out: Path, pid: int) -> int:
    """The instruction count of the newest dump of ``pid``."""
    dumps = sorted(glob.glob(f"{out}.{pid}.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for process {pid}")
    for line in Path(dumps[-1]).read_text("utf-8", "replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {dumps[-1]}")


def per_request(out: Path, server_pid: int, host: str, port: int, path: str, body: bytes, *,
                warmup: int, requests: int) -> float:
    """Instructions per request of ``path`` (POST ``body``, expecting 200)."""
    conn = http.client.HTTPConnection(host, port, timeout=600)

    def send() -> None:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path} answered {answer.status} under callgrind")
        if answer.getheader("connection", "").lower() == "close":
            conn.close()  # gunicorn's sync worker: one request per connection

    try:
        for _ in range(warmup):
            send()
        pid = serving_pid(server_pid)
        _control("-z", pid)
        for _ in range(requests):
            send()
        _control("-d", pid)
    finally:
        conn.close()
    deadline = time.monotonic() + 60
    while True:  # the dump is written by the server process, asynchronously
        try:
            return _total(out, pid) / requests
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cleanup(out: Path) -> None:
    for name in glob.glob(f"{out}.*"):
        os.unlink(name)
