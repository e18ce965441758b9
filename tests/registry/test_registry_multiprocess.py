"""Several processes, each with its own cached registry: a change is seen on the next read.

Children are started with the ``spawn`` method (no state shared with the parent). Each round
the children warm their caches with the current state, the parent changes the opt-out, then
tells the children to read at once; any read that returns the old state counts as stale.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from registry_support import KEY, REDIS_URL, child_main

from piimw.registry import Registry
from piimw.transform import Hasher

CHILDREN = 3
ROUNDS = 120
READS = 15  # per child per round: 3 x 120 x 15 = 5400 reads right after a change


def _run(url: str, prefix: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(CHILDREN)]
    procs = [ctx.Process(target=child_main, args=(url, prefix, child, READS), daemon=True)
             for _, child in pipes]
    for p in procs:
        p.start()
    for _, child in pipes:
        child.close()  # the parent keeps only its ends
    parents = [parent for parent, _ in pipes]
    results: list[dict[str, Any]] = []
    with Registry(url, Hasher(KEY, "t1"), key_prefix=prefix) as writer:
        subject = writer.subject_for("multiprocess")
        writer.clear(subject)
        try:
            for conn in parents:
                assert conn.poll(30), "child did not start"
                assert conn.recv() == "ready"
            for i in range(ROUNDS):
                for conn in parents:
                    conn.send("warm")
                for conn in parents:
                    assert conn.recv() == "warm"
                opted_out = i % 2 == 0
                if opted_out:
                    writer.opt_out(subject, ["analytics"])
                else:
                    writer.opt_in(subject, ["analytics"])
                for conn in parents:
                    conn.send(("check", opted_out))
                for conn in parents:
                    assert conn.recv() == "checked"
            for conn in parents:
                conn.send("stop")
            results = [conn.recv() for conn in parents]
        finally:
            for conn in parents:
                conn.close()
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
                p.close()
    return results


def _check(results: list[dict[str, Any]]) -> None:
    assert len(results) == CHILDREN
    assert sum(r["total"] for r in results) == CHILDREN * ROUNDS * READS
    assert [r["stale"] for r in results] == [0] * CHILDREN
    for r in results:
        # The cache was really used: one miss per change, the rest hits.
        assert r["hits"] > r["misses"], r


def test_sqlite_processes_never_read_stale(tmp_path: Path) -> None:
    _check(_run(f"sqlite:///{tmp_path / 'registry.db'}", "x"))


@pytest.mark.redis
def test_redis_processes_never_read_stale(redis_prefix: str) -> None:
    _check(_run(REDIS_URL, redis_prefix))
