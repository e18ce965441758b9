"""In-process registry backend: for tests and single-process development servers.

Trivially consistent inside one process, and nothing outside it sees a change, so it is never
the right choice for a server with several worker processes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from piimw.stores import Change, Record, Store

_named: dict[str, MemoryStore] = {}
_named_lock = threading.Lock()


class MemoryStore(Store):
    """A dict behind a lock. No cache in front of it: a lookup already costs a dict read."""

    kind: ClassVar[str] = "memory"
    cacheable: ClassVar[bool] = False

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called ``name`` (``memory://name``), created on first use."""
        with _named_lock:
            store = _named.get(name)
            if store is None:
                store = _named[name] = cls()
            return store

    def load(self, subject: str) -> Record:
        return self._records.get(subject) or Record(subject)

    def update(self, subject: str, change: Change) -> tuple[Record, bool]:
        with self._lock:
            current = self._records.get(subject) or Record(subject)
            new = change(current, time.time())
            if new == current:
                return current, False
            if new.empty:
                self._records.pop(subject, None)
            else:
                self._records[subject] = new
            return new, True

    def remove(self, subject: str) -> bool:
        with self._lock:
            return self._records.pop(subject, None) is not None

    def ping(self) -> None:
        return None

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def stats(self) -> dict[str, Any]:
        return {"backend": self.kind, "subjects": len(self._records)}
