"""Instructions per request of a real server, counted by valgrind's callgrind.

Wall-clock throughput on a shared machine moves by ±25% from run to run; the number of
instructions a server executes for one request hardly does (within 1% from run to run,
whatever else the machine is doing; the rest comes from timers that tick by the wall
clock). ``bench_http.py --instructions`` uses this module: each server runs under
``valgrind --tool=callgrind`` (about 50 times slower), is warmed up, its counters are zeroed
with ``callgrind_control -z``, a fixed number of requests is sent one after the other, and
``callgrind_control -d`` dumps the count.

Instructions are a proxy for time, not time: only user space is counted (not the kernel's
work on sockets and connections, the same for every server compared), and neither cache
misses nor branch mispredictions are. Use the difference (piimw's extra instructions per
request) to compare designs and changes; the ratio is not a bound on the throughput ratio
either way (the kernel's share raises that, cache misses lower it).
"""

from __future__ import annotations

import glob
import http.client
import shutil
import subprocess
import time
from pathlib import Path

#: The servers' environment under callgrind: a fixed hash seed gives every run the same dict
#: layouts (without it, counts move by up to 2% from run to run).
ENV = {"PYTHONHASHSEED": "0"}


def available() -> str | None:
    """None if valgrind and callgrind_control are installed, else what is missing."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    return None if not missing else (", ".join(missing) + " not found (apt-get install -y "
                                     "valgrind)")


def wrapper(out: Path) -> list[str]:
    """Command prefix: run under callgrind, one output file per process (``%p``)."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
            "--dump-instr=no", "--dump-line=no"]


def control(option: str, pid: int) -> None:
    """``callgrind_control OPTION PID`` (``-z`` zero the counters, ``-d`` dump them)."""
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True,
                          text=True, timeout=120)
    if done.returncode or "Error" in done.stdout:  # it exits 0 on "task not detected"
        raise RuntimeError(f"callgrind_control {option} {pid}: {done.stdout.strip()}")


def _dumps(out: Path, pid: int | str) -> list[str]:
    """The ``-d`` dumps of ``pid`` (``"*"``: any process), in the order they were taken
    (``out.PID.1``, ``out.PID.2``, ...; not the file written at exit)."""
    dumps = [f for f in glob.glob(f"{out}.{pid}.*") if f.rsplit(".", 1)[1].isdigit()]
    return sorted(dumps, key=lambda f: int(f.rsplit(".", 1)[1]))


def _total(out: Path, pid: int) -> int:
    """The instruction count of the newest dump of ``pid``."""
    dumps = _dumps(out, pid)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for process {pid}")
    return _summary(Path(dumps[-1]))


def dump_totals(out: Path) -> list[int]:
    """The instruction counts of every ``-d`` dump of the one process written to ``out``, in
    the order they were taken."""
    dumps = _dumps(out, "*")
    if len({f.rsplit(".", 2)[1] for f in dumps}) > 1:
        raise RuntimeError(f"dumps of more than one process under {out}")
    return [_summary(Path(f)) for f in dumps]


def _summary(dump: Path) -> int:
    for line in dump.read_text("utf-8", "replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {dump}")


def per_request(out: Path, server_pid: int, host: str, port: int, path: str, body: bytes, *,
                warmup: int, requests: int, headers: dict[str, str] | None = None) -> float:
    """Instructions per request of ``path`` (POST ``body`` with ``headers``, expecting 200)."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    sent = headers if headers is not None else {"Content-Type": "application/json"}

    def send() -> None:
        conn.request("POST", path, body, sent)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path} answered {answer.status} under callgrind")
        if answer.getheader("connection", "").lower() == "close":
            conn.close()  # the next request opens a new connection

    try:
        for _ in range(warmup):
            send()
        control("-z", server_pid)
        for _ in range(requests):
            send()
        control("-d", server_pid)
        deadline = time.monotonic() + 60
        while True:  # written by the server process, when it next runs
            try:
                return _total(out, server_pid) / requests
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        conn.close()

