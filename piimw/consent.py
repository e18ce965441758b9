"""Consent: the privacy state of one request, and the opt-out signals it was read from.

Sans-IO: signals are read from header pairs the adapters hand over; the registry (shared state)
lives in :mod:`piimw.stores` and feeds in through :meth:`Consent.merge`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from piimw.taxonomy import USES, is_within, resolve, resolve_use, use_within

#: What each signal opts out of. GPC: sale/sharing and targeted advertising, not essential use.
SIGNAL_USES: dict[str, tuple[str, ...]] = {
    "gpc": ("marketing", "third_party"),
    "dnt": ("marketing", "third_party", "analytics"),
    "header": (),  # X-PII-Opt-Out lists its uses explicitly
    "session": (),
    "registry": (),
}
NON_ESSENTIAL: tuple[str, ...] = tuple(u for u in USES if u != "essential")

OPT_OUT_HEADER = "x-pii-opt-out"
#: The request headers :func:`from_headers` reads, as ASGI spells them (lower-case bytes).
HEADER_NAMES = frozenset((b"sec-gpc", b"dnt", b"x-do-not-track", OPT_OUT_HEADER.encode()))


@dataclass(frozen=True)
class Consent:
    """Who the request is about and what they refused or asked for.

    ``sources`` maps each opted-out use or category to the signal that set it, so that every
    decision can name its reason (``optout.gpc``). Frozen and hashable: policy caches on it.
    """

    subject: str | None = None
    opted_out_uses: frozenset[str] = frozenset()
    opted_out_categories: frozenset[str] = frozenset()
    opted_in: frozenset[str] = frozenset()
    sources: tuple[tuple[str, str], ...] = ()
    signals: tuple[str, ...] = field(default=())

    def __hash__(self) -> int:
        # Policy and the scrubber key their caches on consents: hash the fields once.
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            h = hash((self.subject, self.opted_out_uses, self.opted_out_categories,
                      self.opted_in, self.sources, self.signals))
            object.__setattr__(self, "_hash", h)
            return h

    def __getstate__(self) -> dict[str, object]:
        # String hashes differ between processes: never carry the cached one across.
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_anonymous")}

    @property
    def anonymous(self) -> Consent:
        """This consent without its subject (itself if it has none), made once per consent.

        What process-wide caches key on: decisions depend on the subject only through rules
        that name subjects, and a signed-in user's pseudonym and opt-outs must not stay in a
        cache after the request.
        """
        if self.subject is None:
            return self
        try:
            return self.__dict__["_anonymous"]  # type: ignore[no-any-return]
        except KeyError:
            other = dataclasses.replace(self, subject=None)
            object.__setattr__(self, "_anonymous", other)
            return other

    @property
    def is_default(self) -> bool:
        return not (self.opted_out_uses or self.opted_out_categories or self.opted_in)

    def signal_for(self, item: str) -> str:
        for key, signal in self.sources:
            if key == item:
                return signal
        return "registry"

    def opted_out_of(self, use: str) -> str | None:
        """The signal that opted this subject out of ``use``, or None. Essential: never."""
        if use_within(use, "essential"):
            return None
        for out in self.opted_out_uses:
            if use_within(use, out):
                return self.signal_for(out)
        return None

    def category_opted_out(self, category: str) -> str | None:
        for out in self.opted_out_categories:
            if is_within(category, out):
                return self.signal_for(out)
        return None

    def merge(self, other: Consent) -> Consent:
        """Most restrictive wins: opt-outs are unioned; an opt-in survives only if not opted out."""
        if self.subject is None and other.subject is None:
            return _merged(self, other)
        return _merge(self, other)  # per user: not kept in the process-wide memo

    @classmethod
    def opt_out(
        cls, uses: Iterable[str] = (), categories: Iterable[str] = (), *, signal: str = "registry",
        subject: str | None = None,
    ) -> Consent:
        """A consent that opts out of ``uses`` and ``categories`` because of ``signal``."""
        if subject is None:
            return _opted_out(tuple(uses), tuple(categories), signal)
        return _opt_out(tuple(uses), tuple(categories), signal, subject)


# Consents are values (frozen, hashable) made from a handful of inputs: the same signals give
# the same consent on request after request. Building one costs ~30,000 instructions and a
# merge ~25,000 (resolving names, frozensets, a frozen dataclass); a request with ``Sec-GPC: 1``
# did both. Memoised, an equal input returns the very same object, whose hash is then cached
# too (policy and scrubber caches key on it). Bounded: the inputs may come from headers.
# Consents of a subject (a registry pseudonym) are not memoised: the memo is for the signals
# every anonymous request repeats, and must not keep who opted out of what after the request.
def _opt_out(uses: tuple[str, ...], categories: tuple[str, ...], signal: str,
             subject: str | None) -> Consent:
    u = frozenset(resolve_use(x) for x in uses)
    c = frozenset(resolve(x) for x in categories)
    return Consent(
        subject=subject, opted_out_uses=u, opted_out_categories=c,
        sources=tuple(sorted((k, signal) for k in u | c)),
        signals=(signal,) if (u or c) else (),
    )


@lru_cache(maxsize=1024)
def _opted_out(uses: tuple[str, ...], categories: tuple[str, ...], signal: str) -> Consent:
    return _opt_out(uses, categories, signal, None)


def _merge(a: Consent, b: Consent) -> Consent:
    uses = a.opted_out_uses | b.opted_out_uses
    cats = a.opted_out_categories | b.opted_out_categories
    opted_in = (a.opted_in | b.opted_in) - uses
    seen = dict(b.sources)
    seen.update(dict(a.sources))
    return Consent(
        subject=a.subject or b.subject,
        opted_out_uses=uses,
        opted_out_categories=cats,
        opted_in=frozenset(opted_in),
        sources=tuple(sorted(seen.items())),
        signals=tuple(dict.fromkeys(a.signals + b.signals)),
    )


_merged = lru_cache(maxsize=1024)(_merge)

DEFAULT = Consent()


def _parse_opt_out_header(value: str) -> tuple[str, ...]:
    uses: list[str] = []
    for part in value.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name in ("all", "*", "1", "true"):
            uses.extend(NON_ESSENTIAL)
            continue
        try:
            uses.append(resolve_use(name))
        except ValueError:
            continue  # unknown uses are ignored, never echoed
    return tuple(uses)


def from_headers(headers: Iterable[tuple[str, str]]) -> Consent:
    """Read opt-out signals from request headers (names lower-case, values decoded latin-1).

    ``Sec-GPC``: exactly ``1`` (any of several headers); ``DNT``: first character ``1``;
    ``X-Do-Not-Track: 1``; ``X-PII-Opt-Out: analytics, marketing`` (or ``all``). Several
    headers may arrive as one value joined by commas (WSGI servers and Django's ``META``
    join them: ``1,1``): each element counts as a header of its own.
    """
    gpc = dnt = False
    header_uses: tuple[str, ...] = ()
    for name, value in headers:
        if name == "sec-gpc":
            gpc = gpc or any(v.strip() == "1" for v in value.split(","))
        elif name == "dnt":
            dnt = dnt or any(v.strip()[:1] == "1" for v in value.split(","))
        elif name == "x-do-not-track":
            dnt = dnt or any(v.strip() == "1" for v in value.split(","))
        elif name == OPT_OUT_HEADER:
            header_uses += _parse_opt_out_header(value)
    consent = DEFAULT
    if gpc:
        consent = consent.merge(Consent.opt_out(SIGNAL_USES["gpc"], signal="gpc"))
    if dnt:
        consent = consent.merge(Consent.opt_out(SIGNAL_USES["dnt"], signal="dnt"))
    if header_uses:
        consent = consent.merge(Consent.opt_out(header_uses, signal="header"))
    return consent


#: Session flag strings that mean "not opted out".
_NO: Final = frozenset({"0", "false", "no", "off", "none"})


def from_session_flag(flag: object) -> Consent | None:
    """The consent a session's opt-out flag stands for, or None.

    ``True`` (or ``"all"``): every non-essential use; a use name or a list of them: those.
    Any other truthy value, or a name piimw does not know among them (``"yes"``,
    ``"marketting"``), opts out of everything non-essential: the app asked for an opt-out,
    and a misspelt one must not leave the subject opted in. A string that says no (``"0"``,
    ``"false"``, ``"no"``, ``"off"``, ``"none"``: a form's or cookie's value) is no opt-out, as
    ``"1"`` and ``"true"`` are one.
    """
    if not flag or (isinstance(flag, str) and flag.strip().lower() in _NO):
        return None
    if isinstance(flag, str):
        names: list[object] = list(flag.split(","))
    elif isinstance(flag, (list, tuple, set, frozenset)):
        names = list(flag)
    else:
        names = ["all"]
    uses: list[str] = []
    for name in names:
        text = str(name)
        found = _parse_opt_out_header(text)
        if not found and text.strip():
            return Consent.opt_out(NON_ESSENTIAL, signal="session")
        uses.extend(found)
    return Consent.opt_out(uses or NON_ESSENTIAL, signal="session")
