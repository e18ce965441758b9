"""The data map: what personal data each route takes in and gives out, and where it may go.

*Declared* comes from the configuration (routes and their compiled plans, and what the policy
decides for each sink). *Observed* comes from the audit trail: PII that detectors found where
no schema declared it. Rendered as Markdown, JSON, a fideslang dataset (YAML), a GDPR Art. 30
record-of-processing skeleton (CSV) or one self-contained HTML page with a flow picture.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import orjson

from piimw.audit.records import policy_hash, utc_now
from piimw.config import Config
from piimw.consent import DEFAULT
from piimw.findings import Sink
from piimw.plan import PlanEntry
from piimw.policy import STRICTNESS
from piimw.routes import Route
from piimw.schema.tags import Tag
from piimw.taxonomy import USES, categories, label, tier

REQUEST_SINKS: tuple[Sink, ...] = ("app", "log", "error", "event")
RESPONSE_SINKS: tuple[Sink, ...] = ("client", "log", "error", "event")
ALL_SINKS: tuple[Sink, ...] = ("app", "client", "log", "error", "event")
SINK_LABELS = {"app": "application (request body)", "client": "client (response body)",
               "log": "logs", "error": "error reports", "event": "analytics & third parties"}
FIDES_USES = {"essential": "essential", "analytics": "analytics", "marketing": "marketing",
              "third_party": "third_party_sharing", "personalization": "personalize"}
FORMATS = ("md", "json", "fides", "csv", "html")


@dataclass(frozen=True)
class Cell:
    """What the policy does to one category in one sink, and which rule said so."""

    action: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Declared:
    route: str
    direction: str  # request | response | query | path
    status: str | None
    pattern: str
    category: str
    uses: tuple[str, ...]
    schema_action: str | None
    source: str
    policy: dict[str, Cell]

    @property
    def tier(self) -> str:
        return tier(self.category)


@dataclass
class Observed:
    route: str
    direction: str
    sink: str
    pattern: str
    category: str
    count: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    first_seen: str = ""
    last_seen: str = ""

    @property
    def tier(self) -> str:
        return tier(self.category)


@dataclass
class DataMap:
    environment: str
    policy_hash: str
    source: str
    generated: str
    declared: list[Declared] = field(default_factory=list)
    observed: list[Observed] = field(default_factory=list)

    def routes(self) -> list[str]:
        seen = dict.fromkeys(d.route for d in self.declared)
        seen.update(dict.fromkeys(o.route for o in self.observed))
        return sorted(seen, key=_route_sort)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment, "policy_hash": self.policy_hash,
            "source": self.source, "generated": self.generated,
            "declared": [dict(asdict(d), tier=d.tier,
                              policy={s: asdict(c) for s, c in d.policy.items()})
                         for d in self.declared],
            "observed": [dict(asdict(o), tier=o.tier) for o in self.observed],
        }


def _route_sort(route: str) -> tuple[str, str]:
    method, _, template = route.partition(" ")
    return template, method


# -- building -------------------------------------------------------------------------------
def build(config: Config, audit_sources: Sequence[str] = (), *, since: str | None = None,
          until: str | None = None) -> DataMap:
    dm = DataMap(config.environment, policy_hash(config), config.source, utc_now())
    for route in sorted(config.routes, key=lambda r: (r.template, r.method)):
        name = f"{route.method} {route.template}"
        if route.request is not None:
            dm.declared += _declared(config, name, route.template, "request", None,
                                     route.request.plan.entries, REQUEST_SINKS)
        if route.query is not None:
            dm.declared += _declared(config, name, route.template, "query", None,
                                     route.query.entries, REQUEST_SINKS)
        if route.path_tags:
            dm.declared += _declared(config, name, route.template, "path", None,
                                     _path_entries(config, route), REQUEST_SINKS)
        for status, body in sorted(route.responses.items()):
            dm.declared += _declared(config, name, route.template, "response", status,
                                     body.plan.entries, RESPONSE_SINKS)
    if audit_sources:
        dm.observed = observed(audit_sources, since=since, until=until)
    return dm


def _path_entries(config: Config, route: Route) -> list[PlanEntry]:
    """Tagged path parameters (``/users/{email}``): declared data that every access log
    prints, as entries of the document that declares the route's other plans."""
    plans = [route.request.plan] if route.request is not None else []
    plans += [route.query] if route.query is not None else []
    plans += [b.plan for b in route.responses.values()]
    source = next((p.source for p in plans if p.source), config.source)
    return [PlanEntry(f"/{name}", Tag((category,)), source)
            for name, category in route.path_tags.items()]


def _cell(config: Config, category: str, tag: Tag, sink: Sink, template: str) -> Cell:
    """What the policy does to ``category`` in ``sink``. An event is decided for its own use
    (``scrub_event``'s, the host's of an HTTP adapter), the request's values in it as
    undeclared: the weakest of those decisions, so a rule that lets a use through shows."""
    decisions = [config.policy.decide(category, tag.uses, sink, DEFAULT, route=template,
                                      schema_action=tag.action)]
    if sink == "event":
        decisions += [config.policy.decide(category, (use,), sink, DEFAULT, route=template,
                                           declared=False) for use in USES]
    d = min(decisions, key=lambda d: STRICTNESS.get(d.action, 0))
    return Cell(d.action, d.rule, d.reason)


def _declared(config: Config, name: str, template: str, direction: str, status: str | None,
              entries: Iterable[PlanEntry], sinks: Sequence[Sink]) -> list[Declared]:
    out = []
    for e in entries:
        for cat in e.tag.categories:
            cells: dict[str, Cell] = {s: _cell(config, cat, e.tag, s, template) for s in sinks}
            out.append(Declared(name, direction, status, e.pattern, cat, tuple(e.tag.uses),
                                e.tag.action, e.source, cells))
    return out


def observed(sources: Sequence[str], *, since: str | None = None,
             until: str | None = None) -> list[Observed]:
    """Undeclared PII from the trail's request records, by route, sink, pattern, category."""
    from piimw.audit.report import count, objects, records, route_label

    found: dict[tuple[str, str, str, str, str], Observed] = {}
    for rec in records(sources, since, until):
        if rec.get("kind") not in ("request", "discovery"):
            continue
        route = route_label(rec)
        t = str(rec.get("time", ""))
        for d in objects(rec.get("decisions")):
            if d.get("declared") is not False:
                continue
            key = (route, str(d.get("dir")), str(d.get("sink")), str(d.get("pattern")),
                   str(d.get("category")))
            o = found.get(key)
            if o is None:
                o = found[key] = Observed(*key, first_seen=t, last_seen=t)
            n = count(d.get("count"), 1)
            o.count += n
            action = str(d.get("action"))
            o.actions[action] = o.actions.get(action, 0) + n
            o.first_seen = min(o.first_seen, t)
            o.last_seen = max(o.last_seen, t)
    return sorted(found.values(), key=lambda o: (*_route_sort(o.route), o.pattern, o.category))


# -- text formats ---------------------------------------------------------------------------
def _weakest(cells: Iterable[str]) -> str:
    return min(cells, key=lambda a: STRICTNESS.get(a, 0))


def render_json(dm: DataMap) -> str:
    return orjson.dumps(dm.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def render_markdown(dm: DataMap) -> str:
    out = [f"# Data map ({dm.environment})", "",
           f"Generated {dm.generated} from `{dm.source}`; policy `{dm.policy_hash}`.", ""]
    cats = sorted({d.category for d in dm.declared} | {o.category for o in dm.observed})
    sensitive = [c for c in cats if tier(c) == "sensitive"]
    out += [f"- Routes: {len(dm.routes())}", f"- Declared fields: {len(dm.declared)}",
            f"- Categories: {len(cats)} ({len(sensitive)} sensitive)",
            f"- Undeclared PII observed: {len(dm.observed)} place(s)", ""]
    for route in dm.routes():
        rows = [d for d in dm.declared if d.route == route]
        obs = [o for o in dm.observed if o.route == route]
        out += [f"## `{route}`", ""]
        if rows:
            out += ["| direction | field | category | tier | uses | " +
                    " | ".join(ALL_SINKS) + " |",
                    "|---|---|---|---|---|" + "---|" * len(ALL_SINKS)]
            for d in rows:
                direction = d.direction + (f" {d.status}" if d.status else "")
                cells = [d.policy[s].action if s in d.policy else "" for s in ALL_SINKS]
                out.append(f"| {direction} | `{_md(d.pattern)}` | {d.category} | {d.tier} | "
                           f"{', '.join(d.uses)} | " + " | ".join(cells) + " |")
            out.append("")
        if obs:
            out += ["Undeclared PII seen in traffic:", "",
                    "| direction | sink | field | category | count | last seen |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {o.direction} | {o.sink} | `{_md(o.pattern)}` | {o.category} | "
                    f"{o.count} | {o.last_seen} |" for o in obs]
            out.append("")
    return "\n".join(out)


def _yaml_scalar(value: Any) -> str:
    return orjson.dumps(value).decode()  # a JSON string is a YAML double-quoted scalar


def _yaml(node: Any, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines += _yaml(v, indent + 2)
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v) if v != {} else '{}'}")
    elif isinstance(node, list):
        for item in node:
            if not isinstance(item, (dict, list)):
                lines.append(f"{pad}- {_yaml_scalar(item)}")
                continue
            sub = _yaml(item, indent + 2)
            if sub:
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
    return lines


def _fides_key(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "_-" else "_" for c in text.lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "root"


def render_fides(dm: DataMap) -> str:
    """A fideslang ``dataset``: one collection per route and direction, nested fields."""
    collections: dict[str, dict[str, Any]] = {}
    for d in dm.declared:
        title = f"{d.route} {d.direction}" + (f" {d.status}" if d.status else "")
        coll = collections.setdefault(title, {"name": _fides_key(title),
                                              "description": title, "fields": {}})
        parts = [p for p in d.pattern.strip("/").split("/") if p and p != "*"] or ["(body)"]
        node = coll["fields"]
        for p in parts[:-1]:
            node = node.setdefault(p, {"fields": {}})["fields"]
        leaf = node.setdefault(parts[-1], {"fields": {}})
        leaf.setdefault("cats", []).append(d.category)
        leaf.setdefault("uses", []).extend(d.uses)
        policy = ", ".join(f"{s}: {c.action}" for s, c in d.policy.items())
        leaf["description"] = f"{d.pattern}; {policy}"

    def fields(tree: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for name, spec in sorted(tree.items()):
            f: dict[str, Any] = {"name": name.replace("~1", "/").replace("~0", "~")}
            if spec.get("description"):
                f["description"] = spec["description"]
            if spec.get("cats"):
                f["data_categories"] = sorted(set(spec["cats"]))
                f["data_uses"] = sorted({FIDES_USES.get(u.split(".")[0], u)
                                         for u in spec["uses"]})
            if spec["fields"]:
                f["fields"] = fields(spec["fields"])
            out.append(f)
        return out

    dataset = {"dataset": [{
        "fides_key": _fides_key(f"piimw_{dm.environment}"),
        "name": f"piimw data map ({dm.environment})",
        "description": f"Declared personal data per route; generated {dm.generated} by piimw "
                       f"from {dm.source} (policy {dm.policy_hash}).",
        "collections": [{"name": c["name"], "description": c["description"],
                         "fields": fields(c["fields"])}
                        for _, c in sorted(collections.items())],
    }]}
    return "\n".join(_yaml(dataset)) + "\n"


ART30_COLUMNS = (
    "Processing activity", "Direction", "Purposes (uses)", "Categories of personal data",
    "Special / sensitive data", "Categories of data subjects", "Recipients (sinks receiving "
    "the data)", "Safeguards applied by piimw", "Transfers to third countries",
    "Retention period", "Legal basis", "Source",
)


def render_csv(dm: DataMap) -> str:
    """A GDPR Art. 30 record-of-processing skeleton: one row per route and direction.

    Columns piimw cannot know (data subjects, transfers, retention, legal basis) are left
    for the controller to fill in.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ART30_COLUMNS)
    groups: dict[tuple[str, str], list[Declared]] = {}
    for d in dm.declared:
        groups.setdefault((d.route, d.direction), []).append(d)
    for (route, direction), rows in sorted(groups.items(), key=lambda kv: (
            *_route_sort(kv[0][0]), kv[0][1])):
        cats = sorted({d.category for d in rows})
        recipients, safeguards = [], []
        for sink in ALL_SINKS:
            actions = [d.policy[sink].action for d in rows if sink in d.policy]
            if not actions:
                continue
            if any(a != "drop" and a != "reject" for a in actions):
                recipients.append(SINK_LABELS[sink])
            protected = sorted({a for a in actions if a != "allow"})
            if protected:
                safeguards.append(f"{sink}: {'/'.join(protected)}")
        w.writerow([route, direction, ", ".join(sorted({u for d in rows for u in d.uses})),
                    ", ".join(cats), ", ".join(c for c in cats if tier(c) == "sensitive"),
                    "", "; ".join(recipients), "; ".join(safeguards), "", "", "",
                    "declared"])
    obs: dict[tuple[str, str], set[str]] = {}
    for o in dm.observed:
        obs.setdefault((o.route, o.direction), set()).add(o.category)
    for (route, direction), cats_seen in sorted(obs.items()):
        cats = sorted(cats_seen)
        w.writerow([route, direction, "(undeclared)", ", ".join(cats),
                    ", ".join(c for c in cats if tier(c) == "sensitive"), "", "", "", "", "",
                    "", "observed in traffic, not declared"])
    return buf.getvalue()


# -- HTML -----------------------------------------------------------------------------------
ACTION_COLORS = {"allow": "#d9534f", "mask": "#f0ad4e", "hash": "#3f8fd2", "redact": "#2e9d6a",
                 "drop": "#2e9d6a", "reject": "#6f5bd6"}
ACTION_MEANING = {"allow": "raw value", "mask": "masked", "hash": "pseudonymised",
                  "redact": "redacted", "drop": "removed", "reject": "request refused"}
TIER_COLORS = {"sensitive": ("#fde8e7", "#d9534f"), "identifier": ("#fff4dc", "#e0a030"),
               "quasi": ("#e8f1fd", "#4a86d4")}
_E = html.escape


@dataclass
class _Node:
    key: str
    title: str
    subtitle: str
    col: int
    fill: str
    stroke: str
    tip: str
    y: float = 0.0


def _category_title(cat: str) -> str:
    info = categories().get(cat)
    return info.name if info else label(cat)


def flow_svg(dm: DataMap, width: int = 1180) -> str:
    """Routes -> categories -> sinks, drawn as an inline SVG (no script, no external asset)."""
    routes = dm.routes()
    cats = sorted({d.category for d in dm.declared} | {o.category for o in dm.observed},
                  key=lambda c: (["sensitive", "identifier", "quasi"].index(tier(c)), c))
    sinks = [s for s in ALL_SINKS if any(s in d.policy for d in dm.declared)
             or any(o.sink == s for o in dm.observed)]
    nodes: dict[str, _Node] = {}
    for r in routes:
        count = sum(1 for d in dm.declared if d.route == r)
        nodes[f"r:{r}"] = _Node(f"r:{r}", r, f"{count} declared field(s)", 0, "#f4f6fa",
                                "#8a94a6", r)
    for c in cats:
        fill, stroke = TIER_COLORS[tier(c)]
        nodes[f"c:{c}"] = _Node(f"c:{c}", _category_title(c), f"{c} · {tier(c)}", 1, fill,
                                stroke, f"{c} ({tier(c)})")
    for sink in sinks:
        nodes[f"s:{sink}"] = _Node(f"s:{sink}", sink, SINK_LABELS[sink], 2, "#eef3f0",
                                   "#6b8f7b", SINK_LABELS[sink])
    node_h, gap, top = 46, 16, 58
    cols = [[n for n in nodes.values() if n.col == i] for i in range(3)]
    rows = max((len(c) for c in cols), default=1) or 1
    height = top + rows * (node_h + gap) + 40
    for col in cols:
        span = len(col) * (node_h + gap) - gap
        y0 = top + ((rows * (node_h + gap) - gap) - span) / 2
        for i, node in enumerate(col):
            node.y = y0 + i * (node_h + gap)
    node_w = (300, 300, 230)
    xs = (20, (width - node_w[1]) / 2, width - node_w[2] - 20)

    # Edges: route -> category (declared solid, observed dashed), category -> sink (action).
    rc: dict[tuple[str, str], list[int]] = {}
    for d in dm.declared:
        rc.setdefault((d.route, d.category), [0, 0])[0] += 1
    for o in dm.observed:
        rc.setdefault((o.route, o.category), [0, 0])[1] += o.count
    cs: dict[tuple[str, str], dict[str, int]] = {}
    for d in dm.declared:
        for sink_name, cell in d.policy.items():
            acts = cs.setdefault((d.category, sink_name), {})
            acts[cell.action] = acts.get(cell.action, 0) + 1
    for o in dm.observed:
        if f"s:{o.sink}" not in nodes:
            continue  # a sink this picture does not draw (a trail from a newer version?)
        for act, k in o.actions.items():
            acts = cs.setdefault((o.category, o.sink), {})
            acts[act] = acts.get(act, 0) + k

    def curve(a: _Node, b: _Node, wa: float, ia: int, na: int, ib: int, nb: int) -> str:
        x1 = xs[a.col] + node_w[a.col]
        x2 = xs[b.col]
        y1 = a.y + node_h * (ia + 1) / (na + 1)
        y2 = b.y + node_h * (ib + 1) / (nb + 1)
        mx = (x1 + x2) / 2
        return f"M{x1:.1f},{y1:.1f} C{mx:.1f},{y1:.1f} {mx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"

    def fan(edges: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        out_ = {}
        by_a: dict[str, list[tuple[str, str]]] = {}
        by_b: dict[str, list[tuple[str, str]]] = {}
        for e in edges:
            by_a.setdefault(e[0], []).append(e)
            by_b.setdefault(e[1], []).append(e)
        for e in edges:
            la = sorted(by_a[e[0]], key=lambda x: nodes[x[1]].y)
            lb = sorted(by_b[e[1]], key=lambda x: nodes[x[0]].y)
            out_[e] = (la.index(e), len(la), lb.index(e), len(lb))
        return out_

    parts: list[str] = []
    e1 = [(f"r:{r}", f"c:{c}") for (r, c) in rc]
    f1 = fan(e1)
    for (r, c), (ndecl, nobs) in sorted(rc.items()):
        na_, nb_ = nodes[f"r:{r}"], nodes[f"c:{c}"]
        ia, na, ib, nb = f1[(na_.key, nb_.key)]
        w = 1.5 + 1.6 * math.log2(1 + ndecl + (1 if nobs else 0))
        path = curve(na_, nb_, w, ia, na, ib, nb)
        if ndecl:
            parts.append(f'<path class="edge" d="{path}" stroke="{TIER_COLORS[tier(c)][1]}" '
                         f'stroke-width="{w:.1f}" fill="none" opacity="0.55"><title>'
                         f'{_E(r)} carries {_E(c)} in {ndecl} declared field(s)</title></path>')
        if nobs:
            parts.append(f'<path class="edge observed" d="{path}" stroke="#c0392b" '
                         f'stroke-width="2.2" stroke-dasharray="6 4" fill="none"><title>'
                         f'undeclared {_E(c)} seen {nobs} time(s) on {_E(r)}</title></path>')
    e2 = [(f"c:{c}", f"s:{s}") for (c, s) in cs]
    f2 = fan(e2)
    for (c, sk), acts in sorted(cs.items()):
        na_, nb_ = nodes[f"c:{c}"], nodes[f"s:{sk}"]
        ia, na, ib, nb = f2[(na_.key, nb_.key)]
        worst = _weakest(acts)
        total = sum(acts.values())
        w = 1.5 + 1.4 * math.log2(1 + total)
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(acts.items()))
        parts.append(f'<path class="edge" d="{curve(na_, nb_, w, ia, na, ib, nb)}" '
                     f'stroke="{ACTION_COLORS.get(worst, "#888")}" stroke-width="{w:.1f}" '
                     f'fill="none" opacity="0.75"><title>{_E(c)} → {_E(sk)}: at worst '
                     f'{_E(ACTION_MEANING.get(worst, worst))} ({_E(detail)})</title></path>')
    for nd in nodes.values():
        x, wn = xs[nd.col], node_w[nd.col]
        title = nd.title if len(nd.title) <= 34 else nd.title[:33] + "…"
        sub = nd.subtitle if len(nd.subtitle) <= 44 else nd.subtitle[:43] + "…"
        parts.append(
            f'<g class="node"><title>{_E(nd.tip)}</title>'
            f'<rect x="{x:.1f}" y="{nd.y:.1f}" width="{wn}" height="{node_h}" rx="8" '
            f'fill="{nd.fill}" stroke="{nd.stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 12:.1f}" y="{nd.y + 19:.1f}" class="nt">{_E(title)}</text>'
            f'<text x="{x + 12:.1f}" y="{nd.y + 36:.1f}" class="ns">{_E(sub)}</text></g>')
    heads = "".join(
        f'<text x="{xs[i] + (node_w[i] / 2 if i == 1 else 0):.1f}" y="30" class="colhead" '
        f'text-anchor="{"middle" if i == 1 else "start"}">{t}</text>'
        for i, t in enumerate(("ROUTES", "DATA CATEGORIES", "WHERE IT GOES")))
    if not nodes:
        parts.append(f'<text x="{width / 2}" y="90" text-anchor="middle" class="ns">No '
                     'personal data declared or observed.</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0f}" '
            f'width="100%" role="img" aria-label="Flow of personal data: routes, categories, '
            f'sinks">{heads}{"".join(parts)}</svg>')


def _chip(action: str) -> str:
    color = ACTION_COLORS.get(action, "#888")
    return (f'<span class="chip" style="--c:{color}" title="{ACTION_MEANING.get(action, "")}">'
            f'{_E(action)}</span>')


def render_html(dm: DataMap) -> str:
    template = Template(resources.files("piimw").joinpath("templates/datamap.html")
                        .read_text("utf-8"))
    cats = sorted({d.category for d in dm.declared} | {o.category for o in dm.observed})
    sensitive = sum(1 for c in cats if tier(c) == "sensitive")
    raw_out = sum(1 for d in dm.declared for s in ("log", "error", "event")
                  if s in d.policy and d.policy[s].action == "allow")
    cards = [("routes", len(dm.routes()), ""), ("declared fields", len(dm.declared), ""),
             ("data categories", len(cats), f"{sensitive} sensitive"),
             ("undeclared PII seen", len(dm.observed), "places in traffic"),
             ("raw values to logs / events", raw_out, "field-sink pairs")]
    card_html = "".join(
        f'<div class="card{" warn" if (i >= 3 and v) else ""}"><div class="num">{v}</div>'
        f'<div class="lbl">{_E(t)}</div><div class="sub">{_E(s)}</div></div>'
        for i, (t, v, s) in enumerate(cards))
    rows = []
    for d in dm.declared:
        direction = d.direction + (f" {d.status}" if d.status else "")
        sinks = "".join(f"<td>{_chip(d.policy[s].action) if s in d.policy else ''}</td>"
                        for s in ALL_SINKS)
        rows.append(f'<tr><td class="mono">{_E(d.route)}</td><td>{_E(direction)}</td>'
                    f'<td class="mono">{_E(d.pattern)}</td><td><span class="tier '
                    f'{d.tier}">{_E(d.tier)}</span> {_E(d.category)}</td>'
                    f'<td>{_E(", ".join(d.uses))}</td>{sinks}</tr>')
    obs_rows = [f'<tr><td class="mono">{_E(o.route)}</td><td>{_E(o.direction)}</td>'
                f'<td>{_E(o.sink)}</td><td class="mono">{_E(o.pattern)}</td>'
                f'<td><span class="tier {o.tier}">{_E(o.tier)}</span> {_E(o.category)}</td>'
                f'<td class="num">{o.count}</td><td>{_E(o.last_seen)}</td></tr>'
                for o in dm.observed]
    observed_html = (
        '<table><thead><tr><th>route</th><th>direction</th><th>sink</th><th>field</th>'
        '<th>category</th><th>count</th><th>last seen</th></tr></thead><tbody>'
        + "".join(obs_rows) + "</tbody></table>") if obs_rows else \
        '<p class="ok">No undeclared personal data in the audit trail read.</p>'
    legend = "".join(f'<span class="lg"><i style="background:{ACTION_COLORS[a]}"></i>'
                     f'{_E(a)} — {_E(ACTION_MEANING[a])}</span>'
                     for a in ("allow", "mask", "hash", "redact", "drop", "reject"))
    legend += ('<span class="lg"><i class="dash"></i>undeclared, seen in traffic</span>'
               + "".join(f'<span class="lg"><i style="background:{TIER_COLORS[t][0]};'
                         f'border:2px solid {TIER_COLORS[t][1]}"></i>{t}</span>'
                         for t in ("sensitive", "identifier", "quasi")))
    return template.substitute(
        title=_E(f"Data map — {dm.environment}"), environment=_E(dm.environment),
        generated=_E(dm.generated), source=_E(dm.source), policy=_E(dm.policy_hash),
        cards=card_html, svg=flow_svg(dm), legend=legend,
        sink_heads="".join(f"<th>{s}</th>" for s in ALL_SINKS),
        declared_rows="".join(rows) or '<tr><td colspan="10">Nothing declared.</td></tr>',
        observed=observed_html)


def render(dm: DataMap, fmt: str) -> str:
    renderers = {"md": render_markdown, "json": render_json, "fides": render_fides,
                 "csv": render_csv, "html": render_html}
    return renderers[fmt](dm)


# -- suggestions ----------------------------------------------------------------------------
@dataclass
class Suggestions:
    """JSON Patch operations (RFC 6902) per schema file, and what could not be suggested."""

    patches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _tokens(pattern: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pattern.strip("/").split("/") if t]


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _tag_value(category: str) -> str:
    short = label(category)
    from piimw.taxonomy import ALIASES

    return short if ALIASES.get(short) == category else category


def suggest(config: Config, found: Sequence[Observed]) -> Suggestions:
    """Proposed ``x-pii`` annotations for undeclared PII seen in traffic.

    Each observation is followed from the route's request or response schema down its
    pointer pattern (through ``$ref``, ``allOf``, ``items``, ``additionalProperties``); where the
    schema describes the field, ``x-pii`` is added to it; where it stops short, the missing
    properties are added with the tag.
    """
    out = Suggestions()
    store = config.store
    src = Path(config.source)
    base = src.resolve().parent if src.is_file() else None
    adds: dict[tuple[str, str], dict[str, Any]] = {}  # (uri, ptr) -> nested missing props
    tags: dict[tuple[str, str], set[str]] = {}
    for o in found:
        method, _, template = o.route.partition(" ")
        route = config.routes.get(method, template)
        where = f"{o.route} {o.direction} {o.pattern}"
        if route is None:
            out.notes.append(f"{where}: route not in the configuration; declare it first")
            continue
        plans = ([route.request.plan] if o.direction == "request" and route.request else
                 [b.plan for b in route.responses.values()] if o.direction == "response"
                 else [])
        plans = [p for p in plans if p.schema_uri]
        if not plans:
            out.notes.append(f"{where}: no schema to annotate")
            continue
        for plan in plans[:1]:
            uri, ptr, rest = _walk(store, plan.schema_uri, plan.schema_pointer,
                                   _tokens(o.pattern))
            if "*" in rest or not o.pattern.startswith("/"):
                out.notes.append(f"{where}: the schema does not describe this part of the "
                                 "body; annotate it by hand")
                continue
            if not rest:
                node = store.at(uri, ptr)
                if isinstance(node, dict) and "x-pii" in node:
                    out.notes.append(f"{where}: already annotated ({o.category} found there "
                                     "too; review the annotation)")
                    continue
                tags.setdefault((uri, ptr), set()).add(o.category)
                continue
            tree = adds.setdefault((uri, ptr), {})
            for t in rest[:-1]:
                tree = tree.setdefault(t, {})
            tree.setdefault(rest[-1], {}).setdefault("\0cats", set()).add(o.category)
    for (uri, ptr), cats in sorted(tags.items()):
        value: Any = [_tag_value(c) for c in sorted(cats)]
        _op(out, store, uri, {"op": "add", "path": f"{ptr}/x-pii",
                              "value": value[0] if len(value) == 1 else value}, base)
    for (uri, ptr), tree in sorted(adds.items()):
        node = store.at(uri, ptr)
        if isinstance(node, dict) and isinstance(node.get("properties"), dict):
            for name, sub in sorted(tree.items()):
                _op(out, store, uri, {"op": "add", "path": f"{ptr}/properties/{_escape(name)}",
                                      "value": _schema(sub)}, base)
        else:
            _op(out, store, uri, {"op": "add", "path": f"{ptr}/properties",
                                  "value": {n: _schema(s) for n, s in sorted(tree.items())}},
                base)
    return out


def _op(out: Suggestions, store: Any, uri: str, op: dict[str, Any], base: Path | None) -> None:
    name = store.names.get(uri, uri)
    if base is not None and Path(name).is_absolute():
        with contextlib.suppress(ValueError):
            name = Path(name).relative_to(base).as_posix()
    out.patches.setdefault(name, []).append(op)


def _schema(tree: dict[str, Any]) -> dict[str, Any]:
    cats = sorted(tree.get("\0cats", ()))
    props = {k: _schema(v) for k, v in sorted(tree.items()) if k != "\0cats"}
    out: dict[str, Any] = {}
    if cats:
        tag = [_tag_value(c) for c in cats]
        out["x-pii"] = tag[0] if len(tag) == 1 else tag
    if props:
        out["type"] = "object"
        out["properties"] = props
    return out


def _deref(store: Any, uri: str, ptr: str) -> tuple[str, str, Any]:
    node = store.at(uri, ptr)
    for _ in range(32):
        if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
            break
        base = store.base_uri(uri, ptr)
        uri, ptr, node = store.resolve(base, node["$ref"], source=uri, pointer=ptr)
    return uri, ptr, node


def _walk(store: Any, uri: str, ptr: str, tokens: list[str]) -> tuple[str, str, list[str]]:
    """Follow ``tokens`` through the schema; return where it stopped and what is left."""
    uri, ptr, node = _deref(store, uri, ptr)
    for i, tok in enumerate(tokens):
        nxt = _child(store, uri, ptr, node, tok)
        if nxt is None:
            return uri, ptr, tokens[i:]
        uri, ptr, node = _deref(store, *nxt)
    return uri, ptr, []


def _child(store: Any, uri: str, ptr: str, node: Any, tok: str) -> tuple[str, str] | None:
    if not isinstance(node, dict):
        return None
    props = node.get("properties")
    if tok != "*" and isinstance(props, dict) and tok in props:
        return uri, f"{ptr}/properties/{_escape(tok)}"
    if (tok == "*" or tok.isdigit()) and isinstance(node.get("items"), dict):
        return uri, f"{ptr}/items"
    if isinstance(node.get("additionalProperties"), dict):
        return uri, f"{ptr}/additionalProperties"
    for key in ("allOf", "anyOf", "oneOf"):
        for i in range(len(node.get(key) or ())):
            sub_uri, sub_ptr, sub_node = _deref(store, uri, f"{ptr}/{key}/{i}")
            hit = _child(store, sub_uri, sub_ptr, sub_node, tok)
            if hit is not None:
                return hit
    return None
