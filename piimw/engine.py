"""The scrubbing engine: apply a plan, the detectors and the policy to one document or text.

Pure: no I/O and no global state. One :class:`Scrubber` is built from configuration at
start-up and shared by every request; per-call state lives in a :class:`_Walk`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from piimw.consent import DEFAULT, Consent
from piimw.detect import Detectors, KnownValues, Span, default_detectors, find_all, redact
from piimw.detect.known import TEXT_BREAK
from piimw.findings import Action, Finding, Sink
from piimw.plan import Node, Plan
from piimw.policy import Decision, Policy, strictest
from piimw.schema.loader import escape_token, unescape_token
from piimw.schema.tags import Tag
from piimw.transform import DROP, Hasher, apply, json_bytes, mask_string, redact_token

PAYLOAD_SINKS = ("app", "client")
_SEP = TEXT_BREAK.encode("ascii")


_Raw = tuple[tuple[str | int, ...], str, Decision, str]


class Result:
    """A scrubbed copy of the input and what was decided. ``rejected``: why to refuse.

    Findings are built on first access: the hot path records bare tuples, and most callers
    only need counts or nothing at all.
    """

    __slots__ = ("_findings", "_raw", "_rejected", "_rejected_raw", "_sink", "value")

    def __init__(self, value: Any, findings: list[Finding] | None = None,
                 rejected: Finding | None = None, *, raw: list[_Raw] | None = None,
                 sink: Sink = "log", rejected_raw: _Raw | None = None) -> None:
        self.value = value
        self._findings = findings
        self._rejected = rejected
        self._raw = raw or []
        self._sink: Sink = sink
        self._rejected_raw = rejected_raw

    @property
    def findings(self) -> list[Finding]:
        if self._findings is None:
            self._findings = [_materialize(r, self._sink) for r in self._raw]
        return self._findings

    @property
    def rejected(self) -> Finding | None:
        if self._rejected is None and self._rejected_raw is not None:
            self._rejected = _materialize(self._rejected_raw, self._sink)
        return self._rejected

    @property
    def rejected_path(self) -> tuple[str | int, ...] | None:
        """Where the refused value is, keys as ``str`` and array indices as ``int``."""
        if self._rejected_raw is not None:
            return self._rejected_raw[0]
        if self._rejected is not None:  # built from a Finding: keys and indices look alike
            return tuple(unescape_token(t) for t in self._rejected.location.split("/")[1:])
        return None

    @property
    def ok(self) -> bool:
        return self._rejected is None and self._rejected_raw is None

    @property
    def changed_by_consent(self) -> set[str]:
        """Signals (``gpc``, ``dnt``...) that changed something, without building findings."""
        out: set[str] = set()
        for f in self._findings if self._findings is not None else ():
            if f.reason.startswith("optout."):
                out.add(f.reason[7:])
        for r in self._raw:
            if r[2].reason.startswith("optout."):
                out.add(r[2].reason[7:])
        return out


def _materialize(raw: _Raw, sink: Sink) -> Finding:
    path, category, d, detector = raw
    lpath = list(path)
    return Finding(_pointer(lpath), category, d.action, sink, detector, _pattern(lpath), d.rule,
                   d.reason)


def _pointer(path: list[str | int]) -> str:
    return "".join(f"/{escape_token(p)}" if isinstance(p, str) else f"/{p}" for p in path)


def _pattern(path: list[str | int]) -> str:
    return "".join(f"/{escape_token(p)}" if isinstance(p, str) else "/*" for p in path) or "/"


class Scrubber:
    """Policy + detectors + keys: everything needed to scrub, built once."""

    def __init__(
        self,
        policy: Policy | None = None,
        detectors: Detectors | None = None,
        hasher: Hasher | None = None,
        *,
        detect_undeclared: bool = True,
    ) -> None:
        self.policy = policy or Policy()
        self.detectors = detectors if detectors is not None else default_detectors()
        self.hasher = hasher
        self.detect_undeclared = detect_undeclared
        self._contexts: dict[tuple[object, ...], dict[int, tuple[str, Decision, Tag]]] = {}

    def _decisions_for(self, sink: Sink, consent: Consent, route: str | None,
                       event_type: str | None) -> dict[int, tuple[str, Decision, Tag]]:
        """Decisions per tag for one context, shared by every call in that context."""
        if consent.subject is not None:
            shared = self.policy.cache_consent(consent)
            if shared is None:
                return {}  # per subject: kept for this call only
            consent = shared
        key = (sink, consent, route, event_type)
        hit = self._contexts.get(key)
        if hit is None:
            if len(self._contexts) > 4096:
                self._contexts.clear()
            hit = self._contexts[key] = {}
        return hit

    # -- documents ------------------------------------------------------------------------
    def scrub(
        self,
        document: Any,
        plan: Plan | None = None,
        *,
        sink: Sink = "log",
        consent: Consent = DEFAULT,
        route: str | None = None,
        event_type: str | None = None,
        known: KnownValues | None = None,
        collect: bool = False,
        detect: bool | None = None,
    ) -> Result:
        """Return a scrubbed copy of ``document``; the input is never modified.

        ``collect``: add tagged and detected values to ``known`` (request bodies do this, so
        the values can be recognised later in logs and error pages).
        """
        detect = self.detect_undeclared if detect is None else detect
        root = plan.root if plan is not None else None
        memo = known if collect else None
        names = plan.names if plan is not None else frozenset()
        walk = _Walk(self, sink, consent, route, event_type, memo, detect, known, names,
                     inline=False)
        value = walk.visit(document, root, [], False)
        if walk.candidates and walk.any_candidate_hits():
            # Rare path: something untagged looks like PII. Walk again, detecting inline, so
            # that edits land on the right elements even where arrays lost dropped items.
            walk = _Walk(self, sink, consent, route, event_type, memo, detect, known, names,
                         inline=True)
            value = walk.visit(document, root, [], False)
        if value is DROP:
            value = None
        return Result(value, raw=walk.raw, sink=sink, rejected_raw=walk.rejected)

    # -- free text ------------------------------------------------------------------------
    def scrub_text(
        self,
        text: str,
        *,
        sink: Sink = "log",
        consent: Consent = DEFAULT,
        route: str | None = None,
        event_type: str | None = None,
        known: KnownValues | None = None,
        location: str = "text",
    ) -> tuple[str, list[Finding]]:
        """Find PII in ``text`` (detectors + known values) and apply the sink's policy."""
        spans = find_all(text, self.detectors, known)
        if not spans:
            return text, []
        return self.scrub_spans(text, spans, sink=sink, consent=consent, route=route,
                                event_type=event_type, location=location)

    def scrub_spans(
        self,
        text: str,
        spans: list[Span],
        *,
        sink: Sink = "log",
        consent: Consent = DEFAULT,
        route: str | None = None,
        event_type: str | None = None,
        location: str = "text",
    ) -> tuple[str, list[Finding]]:
        """Apply the sink's policy to ``spans`` of ``text`` (found by the caller, which may
        have left some out: a cookie's own credentials in a ``Set-Cookie``)."""
        findings: list[Finding] = []
        replace = self._span_replacer(sink, consent, route, event_type, location, findings)
        return redact(text, spans, replace), findings

    def _span_replacer(
        self, sink: Sink, consent: Consent, route: str | None, event_type: str | None,
        location: str, findings: list[Finding],
    ) -> Callable[[Span, str], str]:
        policy, hasher = self.policy, self.hasher

        def replace(span: Span, matched: str) -> str:
            d = policy.decide(span.category, ("essential",), sink, consent, route=route,
                              event_type=event_type, declared=False)
            findings.append(Finding(location, span.category, d.action, sink, span.detector,
                                    "", d.rule, d.reason))
            return _text_action(d.action, matched, span.category, sink, hasher)

        return replace


def _text_action(action: Action, matched: str, category: str, sink: str,
                 hasher: Hasher | None) -> str:
    """Inside free text a value can only be replaced, never dropped: drop means redact."""
    if action == "allow":
        return matched
    if action == "mask":
        return mask_string(matched, category)
    if action == "hash" and hasher is not None:
        return hasher.pseudonym(matched, sink)
    return redact_token(category)


class _Walk:
    """State of one scrub call: findings, pending detector candidates, decision cache."""

    __slots__ = (
        "_decisions",
        "candidates",
        "consent",
        "detect",
        "event_type",
        "inline",
        "known",
        "lookup",
        "names",
        "raw",
        "rejected",
        "route",
        "s",
        "sink",
    )

    def __init__(self, scrubber: Scrubber, sink: Sink, consent: Consent, route: str | None,
                 event_type: str | None, known: KnownValues | None, detect: bool,
                 lookup: KnownValues | None, names: frozenset[str], *, inline: bool) -> None:
        self.s = scrubber
        #: The keys the plan's schema declares: the developer's, never read for PII.
        self.names = names
        self.inline = inline
        #: The request's known values, even empty (values may be added during the walk): the
        #: detector pass searches them as they are when it runs and remembers there the texts
        #: it finds clean.
        self.lookup = lookup
        self.sink = sink
        self.consent = consent
        self.route = route
        self.event_type = event_type
        self.known = known
        self.detect = detect
        self.raw: list[_Raw] = []
        self.rejected: _Raw | None = None
        self.candidates: list[Any] = []
        self._decisions = scrubber._decisions_for(sink, consent, route, event_type)

    def decision(self, tag: Tag) -> tuple[str, Decision]:
        cached = self._decisions.get(id(tag))
        if cached is not None and cached[2] is tag:
            return cached[0], cached[1]
        policy = self.s.policy
        category, decision = strictest(
            (c, policy.decide(c, tag.uses, self.sink, self.consent, route=self.route,
                              event_type=self.event_type, schema_action=tag.action))
            for c in tag.categories
        )
        self._decisions[id(tag)] = (category, decision, tag)
        return category, decision

    def visit(self, value: Any, node: Node | None, path: list[str | int], reviewed: bool) -> Any:
        if node is not None:
            tag = node.tag
            if tag is not None:
                if tag.categories:
                    return self.tagged(value, node, tag, path)
                reviewed = True
        elif not self.inline and isinstance(value, (dict, list)):
            # Nothing tagged below: no Python walk. The subtree joins the one detector pass
            # as JSON text, and is walked only if that pass finds something.
            if self.detect and not reviewed and value:
                self.candidates.append(value)
            return value
        if isinstance(value, dict):
            return self._visit_dict(value, node, path, reviewed)
        if isinstance(value, list):
            return self._visit_list(value, node, path, reviewed)
        if self.detect and not reviewed and isinstance(value, str) and len(value) > 4:
            if not self.inline:
                self.candidates.append(value)
                return value
            spans = find_all(value, self.s.detectors, self.lookup)
            if spans:
                return self._undeclared(path, value, spans)
        return value

    def _visit_dict(self, value: dict[str, Any], node: Node | None, path: list[str | int],
                    reviewed: bool) -> Any:
        out: dict[str, Any] | None = None
        detect = self.detect
        # Inlined from visit() for the two common cases (a tagged leaf, an untagged value
        # joining the detector pass): most keys of most documents are one or the other.
        gather = detect and not reviewed and not self.inline
        props = node.props if node is not None and not node.patterns \
            and node.additional is None else None
        # A key no schema declares is the client's choice: it may be personal data itself.
        keys = detect and not reviewed
        declared = self.names
        for k, v in value.items():
            nk = seg = k
            if keys and k.__class__ is str and len(k) > 4 and k not in declared:
                if gather:
                    self.candidates.append(k)
                else:
                    nk, seg = self._key(k, path)
                    if nk is DROP:
                        out = _without(value, out, k)
                        continue
            if props is not None:
                child = props.get(k)
            else:
                child = node.child_for_key(k) if node is not None else None
            if child is None:
                if not detect or not isinstance(v, (dict, list, str)) or (
                        reviewed and not self.inline):
                    nv = v
                elif gather:
                    if v and (not isinstance(v, str) or len(v) > 4):
                        self.candidates.append(v)
                    continue
                else:
                    path.append(seg)
                    nv = self.visit(v, None, path, reviewed)
                    path.pop()
            else:
                path.append(seg)
                tag = child.tag
                if tag is not None and tag.categories:
                    nv = self.tagged(v, child, tag, path)
                else:
                    nv = self.visit(v, child, path, reviewed)
                path.pop()
            if nv is not v or nk is not k:
                if nv is DROP or nk is not k:
                    out = _without(value, out, k)
                elif out is None:
                    out = dict(value)
                if nv is not DROP:
                    out[k if nk is k else _free_key(out, value, nk)] = nv
        return value if out is None else out

    def _key(self, key: str, path: list[str | int]) -> tuple[Any, str]:
        """``key`` as the policy wants it written (or :data:`DROP`: the entry goes), and how
        findings name it: as written, ``*`` where it stays as it was (a finding must not
        carry the personal data it is about)."""
        spans = find_all(key, self.s.detectors, self.lookup)
        if not spans:
            return key, key
        path.append(key)
        try:
            written: tuple[Any, str] = self._undeclared(path, key, spans, is_key=True)
        finally:
            path.pop()
        return written

    def _visit_list(self, value: list[Any], node: Node | None, path: list[str | int],
                    reviewed: bool) -> Any:
        out: list[Any] | None = None
        for i, v in enumerate(value):
            child = node.child_for_index(i) if node is not None else None
            if child is None and (not self.detect or not isinstance(v, (dict, list, str))):
                if out is not None:
                    out.append(v)
                continue
            path.append(i)
            nv = self.visit(v, child, path, reviewed)
            path.pop()
            if nv is not v and out is None:
                out = value[:i]
            if out is not None and nv is not DROP:
                out.append(nv)
        return value if out is None else out

    def tagged(self, value: Any, node: Node, tag: Tag, path: list[str | int]) -> Any:
        cached = self._decisions.get(id(tag))
        if cached is not None and cached[2] is tag:
            category, d = cached[0], cached[1]
        else:
            category, d = self.decision(tag)
        sink = self.sink
        entry = (tuple(path), category, d, "schema")
        self.raw.append(entry)
        known = self.known
        if known is not None:
            if value.__class__ is str:
                known.add(value, category)
            else:
                _remember(known, value, category)
        if d.action == "allow":
            return value
        if d.action == "reject":
            if self.rejected is None:
                self.rejected = entry
            return value
        if d.action == "redact" and value.__class__ is str:
            return redact_token(category)  # the common case, without the generic dispatch
        types = node.types if sink in PAYLOAD_SINKS else None
        key = None
        if self.detect and isinstance(value, (dict, list)):  # its keys are not the tag's
            def key(k: str) -> Any:
                return k if k in self.names else self._key(k, path)[0]
        return _transform_tree(d.action, value, category, sink, self.s.hasher, types, key)

    # -- detection of PII nobody tagged -----------------------------------------------------
    def any_candidate_hits(self) -> bool:
        """One detector pass over all untagged strings at once: the clean case costs one call.

        The joined pass finds whatever each text alone would (``TEXT_BREAK`` ends a text as
        the end of the input does), so a text it found clean is clean on its own. Texts this
        request already found clean (a response echoing its request) are skipped: see
        :meth:`KnownValues.unchecked`. The pass only decides whether to walk again, and that
        walk looks at each string on its own, so leaving texts out changes no result.
        """
        texts = [c.encode("utf-8", "surrogatepass") if isinstance(c, str) else json_bytes(c)
                 for c in self.candidates]
        known, detectors = self.lookup, self.s.detectors
        if known is not None:
            texts = known.unchecked(detectors, texts)
            if not texts:
                return False
        joined = _SEP.join(texts)
        # The values known now, those this walk remembered included (the inline walk that
        # follows a hit looks for them too).
        if detectors.search_utf8(joined) or (known and known.search(
                joined.decode("utf-8", "surrogatepass"))):
            return True
        if known is not None:
            known.checked_clean(detectors, texts)
        return False

    def _undeclared(self, path: list[str | int], text: str, spans: list[Span], *,
                    is_key: bool = False) -> Any:
        """``text`` as the policy writes it (or :data:`DROP`), its findings recorded. For a
        key (``is_key``, ``path`` ending with it) the pair (written, the findings' segment)."""
        policy, sink = self.s.policy, self.sink
        decisions = [(span, policy.decide(span.category, ("essential",), sink, self.consent,
                                          route=self.route, event_type=self.event_type,
                                          declared=False)) for span in spans]
        out = self._written(text, spans, decisions)
        seg = out if isinstance(out, str) and out != text else "*"
        tpath = (*path[:-1], seg) if is_key else tuple(path)
        for span, d in decisions:
            entry = (tpath, span.category, d, span.detector)
            self.raw.append(entry)
            if self.known is not None and span.detector != "known":
                self.known.add(text[span.start:span.end], span.category)
            if d.action == "reject" and self.rejected is None:
                self.rejected = entry
        return (out, seg) if is_key else out

    def _written(self, text: str, spans: list[Span],
                 decisions: list[tuple[Span, Decision]]) -> Any:
        sink = self.sink
        if any(d.action == "drop" or (d.action == "reject" and sink != "app")
               for _, d in decisions):
            return DROP
        if all(d.action in ("allow", "reject") for _, d in decisions):
            return text
        by_span = {id(sp): d for sp, d in decisions}
        hasher = self.s.hasher

        def replace(span: Span, matched: str) -> str:
            d = by_span[id(span)]
            return _text_action(d.action, matched, span.category, sink, hasher)

        return redact(text, spans, replace)


def _without(value: dict[str, Any], out: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """The copy of ``value`` being written (made on the first change), ``key`` taken out."""
    if out is None:
        out = dict(value)
    out.pop(key, None)
    return out


def _free_key(out: dict[str, Any], value: dict[str, Any], key: str) -> str:
    """``key`` (a rewritten key), numbered if another key already reads so: two addresses
    redacted alike must not overwrite one another."""
    if key not in out and key not in value:
        return key
    n = 2
    while f"{key}#{n}" in out or f"{key}#{n}" in value:
        n += 1
    return f"{key}#{n}"


def _remember(known: KnownValues, value: Any, category: str) -> None:
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        known.add(value, category)
    elif isinstance(value, dict):
        for v in value.values():
            _remember(known, v, category)
    elif isinstance(value, list):
        for v in value:
            _remember(known, v, category)


def _transform_tree(action: Action, value: Any, category: str, sink: str,
                    hasher: Hasher | None, types: tuple[str, ...] | None,
                    key: Callable[[str], Any] | None = None) -> Any:
    """Apply an action to a tagged value; containers are transformed leaf by leaf, their
    keys (the tag says nothing of them) as ``key`` says: unchanged, rewritten or dropped."""
    if action == "drop":
        return DROP
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            nk = key(k) if key is not None and k.__class__ is str and len(k) > 4 else k
            if nk is not DROP:
                out[k if nk is k else _free_key(out, value, nk)] = _transform_tree(
                    action, v, category, sink, hasher, None, key)
        return out
    if isinstance(value, list):
        return [_transform_tree(action, v, category, sink, hasher, None, key) for v in value]
    if value is None:
        return None
    return apply(action, value, category, sink=sink, hasher=hasher,
                 types=types if types is not None else _own_type(value))


def _own_type(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, bool):
        return ("boolean",)
    if isinstance(value, (int, float)):
        return ("number",)
    return None
