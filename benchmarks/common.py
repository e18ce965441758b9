"""Shared timing and reporting helpers for the benchmarks.

The machine the benchmarks run on is assumed to be shared and noisy, so every comparison is made
inside one run: the rows being compared are timed in alternation (the order rotated each round,
so a slow spell or a warm cache does not always favour the same row), the round is repeated,
and the median of the rounds is reported. In-process rows are timed in CPU time of this process
(``time.process_time``): a neighbour taking the core inflates wall-clock time, much less CPU time.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Row",
    "Samples",
    "Table",
    "fmt_bytes",
    "fmt_time",
    "interleave",
    "median",
]

Timer = Callable[[], float]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _sample(fn: Callable[[], object], number: int, timer: Timer) -> float:
    t0 = timer()
    for _ in range(number):
        fn()
    return (timer() - t0) / number


class Samples:
    """Seconds per call of each row, one sample per round (rounds in alternation)."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def __getitem__(self, name: str) -> float:
        """Median seconds per call."""
        return median(self.samples[name])

    def ratio(self, name: str, reference: str) -> float:
        """Median of the per-round ratios ``name / reference`` (each round's two samples were
        taken moments apart, so their ratio is what the noise disturbs least)."""
        return median([a / b for a, b in zip(self.samples[name], self.samples[reference],
                                             strict=True)])

    def extra(self, name: str, reference: str) -> float:
        """Median of the per-round differences ``name - reference``, seconds per call."""
        return median([a - b for a, b in zip(self.samples[name], self.samples[reference],
                                             strict=True)])


def interleave(
    rows: Mapping[str, Callable[[], object]],
    *,
    number: int | Mapping[str, int],
    repeat: int,
    timer: Timer = time.process_time,
    warmup: bool = True,
) -> Samples:
    """Time the rows in alternation ``repeat`` times; seconds per call, per round.

    ``number``: calls per sample (one count for all rows, or per row). Round ``r`` starts with
    row ``r mod len(rows)``. A full collection runs before each sample, so garbage left by one
    row is not collected on the next row's time; the collector stays enabled while timing.
    """
    names = list(rows)
    counts = {n: number if isinstance(number, int) else number[n] for n in names}
    if warmup:
        for n in names:
            rows[n]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            gc.collect()
            samples[n].append(_sample(rows[n], counts[n], timer))
    return Samples(samples)


def fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.0f} KB"
    return f"{n} B"


@dataclass
class Row:
    """One line of the consolidated table.

    ``value``: the absolute figure, already formatted. ``reference``: what the ratio is taken
    against, with its absolute figure. ``ok``: None when the row has no target (information).
    """

    group: str
    name: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def render(self) -> str:
        head = ("group", "row", "measured", "reference (same run)", "ratio", "target", "result")
        cells = [head] + [(r.group, r.name, r.value, r.reference, r.ratio, r.target, r.verdict)
                          for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        right = {2, 4}

        def line(c: Sequence[str]) -> str:
            return "  ".join(s.rjust(w) if i in right else s.ljust(w)
                             for i, (s, w) in enumerate(zip(c, widths, strict=True))).rstrip()

        rule = "-" * len(line(head))
        out = [self.title, rule, line(head), rule]
        group = None
        for c in cells[1:]:
            if group is not None and c[0] != group:
                out.append("")
            group = c[0]
            out.append(line(c))
        out.append(rule)
        scored = [r for r in self.rows if r.ok is not None]
        missed = [r for r in scored if not r.ok]
        out.append(f"{len(scored) - len(missed)}/{len(scored)} targets met"
                   + (f"; missed: {', '.join(f'{r.group} / {r.name}' for r in missed)}"
                      if missed else ""))
        return "\n".join(out)
