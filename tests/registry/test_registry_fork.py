"""A registry used before a fork keeps working, correctly, in the child (gunicorn --preload)."""

from __future__ import annotations

import multiprocessing
import sys
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

from piimw.registry import Registry

MakeRegistry = Callable[..., Registry]


@pytest.mark.skipif(sys.platform == "win32", reason="fork only")
def test_forked_child_gets_fresh_connections(make_registry: MakeRegistry, backend: str) -> None:
    if backend == "memory":
        pytest.skip("memory:// is per process by definition")
    registry, writer = make_registry(), make_registry()
    subject = registry.subject_for("fork")
    writer.opt_out(subject, ["analytics"])
    for _ in range(5):
        assert registry.get(subject).opted_out_uses == {"analytics"}

    def child(conn: Connection) -> None:
        results = [sorted(registry.get(subject).opted_out_uses)]
        conn.send("ready")
        conn.recv()  # the parent changed the registry meanwhile
        results.append(sorted(registry.get(subject).opted_out_uses))
        results.append(sorted(registry.get(subject).opted_out_uses))
        conn.send(results)
        registry.close()
        conn.close()

    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        proc = ctx.Process(target=child, args=(child_end,))
        proc.start()
    child_end.close()
    try:
        assert parent_end.poll(20)
        assert parent_end.recv() == "ready"
        writer.opt_in(subject, ["analytics"])
        parent_end.send("go")
        assert parent_end.poll(20)
        results = parent_end.recv()
    finally:
        parent_end.close()
        proc.join(timeout=20)
        proc.close()
    assert results == [["analytics"], [], []]
    # The parent's registry is unaffected by the child's closing its copies.
    assert registry.get(subject).opted_out_uses == frozenset()
