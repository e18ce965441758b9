"""Findings: what piimw noticed or did. A finding never carries the value itself."""

from __future__ import annotations

from typing import Literal, NamedTuple

Action = Literal["allow", "redact", "mask", "hash", "drop", "reject"]
Sink = Literal["app", "client", "log", "error", "event", "audit"]

ACTIONS: tuple[Action, ...] = ("allow", "redact", "mask", "hash", "drop", "reject")
SINKS: tuple[Sink, ...] = ("app", "client", "log", "error", "event", "audit")


class Finding(NamedTuple):
    """One decision taken on one value.

    ``location`` is the JSON pointer of the instance (or a channel name such as ``query:email``),
    ``pattern`` the plan's path pattern with ``*`` for indices, ``detector`` is ``"schema"`` for
    tagged fields or the name of the detector that matched.
    """

    location: str
    category: str
    action: Action
    sink: Sink
    detector: str = "schema"
    pattern: str = ""
    rule: str = ""
    reason: str = ""
