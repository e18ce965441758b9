"""The documentation's examples run, so they cannot rot.

A fenced ``python`` block in ``README.md`` (if present) or ``docs/*.md`` whose preceding line
(blank lines aside) is ``<!-- doctest -->`` is executed in a fresh namespace, in an empty
temporary working directory (the convention is described in ``docs/index.md``). Also checked:
markers only precede ``python`` blocks, ``docs/index.md`` lists every page, links from the
README and the ``docs/`` pages point at files and headings that exist, every key the settings
schemas accept is named on its page, and every ``piimw`` command in a shell block parses.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import piimw
import piimw.logging

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "<!-- doctest -->"
RUNNABLE_LANGS = ("python", "py")

_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_CLOSE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*$")
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


def pages() -> list[Path]:
    readme = ROOT / "README.md"
    return ([readme] if readme.is_file() else []) + sorted(DOCS.glob("*.md"))


@dataclass(frozen=True)
class Block:
    """One fenced code block: where its code starts, its language, and whether it is marked."""

    path: Path
    line: int  # 1-based line number of the first code line
    lang: str
    code: str
    marked: bool

    @property
    def runnable(self) -> bool:
        return self.marked and self.lang in RUNNABLE_LANGS

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Parsed:
    blocks: list[Block]
    orphan_markers: list[int]  # marker lines followed by something other than a fence
    headings: list[str]  # heading texts outside code blocks


def parse(path: Path) -> Parsed:
    """CommonMark-style fences: a block closes with the same character, at least as long."""
    lines = path.read_text("utf-8").splitlines()
    blocks: list[Block] = []
    orphans: list[int] = []
    headings: list[str] = []
    previous: tuple[int, str] | None = None  # last non-blank line outside code blocks
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _OPEN.match(line)
        if opening is not None and opening["fence"][0] == "`" and "`" in opening["info"]:
            opening = None  # an inline code span, not a fence
        if opening is None:
            if line.strip():
                if previous is not None and previous[1] == MARKER:
                    orphans.append(previous[0])
                heading = _HEADING.match(line)
                if heading is not None:
                    headings.append(heading["text"])
                previous = (i + 1, line.strip())
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].strip()
        end = i + 1
        while end < len(lines):
            closing = _CLOSE.match(lines[end])
            if closing is not None and closing["fence"][0] == fence[0] and \
                    len(closing["fence"]) >= len(fence):
                break
            end += 1
        body = [ln[min(indent, len(ln) - len(ln.lstrip(" "))):] for ln in lines[i + 1:end]]
        marked = previous is not None and previous[1] == MARKER
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(path, i + 2, lang, "\n".join(body) + "\n", marked))
        previous = (i + 1, fence)
        i = end + 1
    if previous is not None and previous[1] == MARKER:
        orphans.append(previous[0])
    return Parsed(blocks, orphans, headings)


def runnable_blocks() -> Iterator[Block]:
    for path in pages():
        yield from (b for b in parse(path).blocks if b.runnable)


EXAMPLES = list(runnable_blocks())


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory; the environment and piimw's globals restored afterwards."""
    monkeypatch.chdir(tmp_path)
    environ = dict(os.environ)
    filter_before = piimw.logging.installed()
    try:
        yield tmp_path
    finally:
        os.environ.clear()
        os.environ.update(environ)
        piimw.configure(None)
        if filter_before is None and piimw.logging.installed() is not None:
            piimw.logging.uninstall()


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.where for b in EXAMPLES])
def test_example_runs(block: Block, sandbox: Path) -> None:
    # Pad with newlines so that tracebacks point at the Markdown file's own line numbers.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, str(block.path), "exec")
    namespace = {"__name__": "__piimw_doc_example__"}
    exec(code, namespace)


def test_there_are_runnable_examples() -> None:
    assert len(EXAMPLES) >= 5, [b.where for b in EXAMPLES]


def test_markers_only_precede_python_blocks() -> None:
    wrong = []
    for path in pages():
        parsed = parse(path)
        wrong += [f"{b.where} ({b.lang or 'no language'})" for b in parsed.blocks
                  if b.marked and not b.runnable]
        wrong += [f"{path.relative_to(ROOT)}:{n} (not followed by a code block)"
                  for n in parsed.orphan_markers]
    assert not wrong, f"{MARKER} must be followed by a ```python block: {wrong}"


def test_index_lists_every_page() -> None:
    index = (DOCS / "index.md").read_text("utf-8")
    linked = {m["target"].partition("#")[0] for m in _LINK.finditer(index)}
    missing = sorted(p.name for p in DOCS.glob("*.md")
                     if p.name != "index.md" and p.name not in linked)
    assert not missing, f"docs/index.md does not list {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    docs = pages()
    anchors = {p.resolve(): {slug(h) for h in parse(p).headings} for p in docs}
    broken = []
    for path in docs:
        text = path.read_text("utf-8")
        for m in _LINK.finditer(text):
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path.resolve()
            if file and not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest in anchors and anchor not in anchors[dest]:
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def _documented(text: str, name: str) -> bool:
    """``name`` in backticks (a table: or its keys, ``name.key``), or set as ``name = ...`` in
    a TOML example."""
    return (f"`{name}`" in text or f"`{name}." in text
            or re.search(rf"^\s*{re.escape(name)}\s*=", text, re.M) is not None)


def _settings_by_page() -> dict[str, list[str]]:
    from piimw.audit import AUDIT_SETTINGS_SCHEMA
    from piimw.config import CONFIG_SCHEMA
    from piimw.registry import REGISTRY_SCHEMA
    from piimw.signals import CONSENT_SCHEMA

    top = CONFIG_SCHEMA["properties"]
    api = REGISTRY_SCHEMA["properties"]["api"]["properties"]
    return {
        "config.md": [*top, *(f"hash.{k}" for k in top["hash"]["properties"]),
                      *top["routes"]["items"]["properties"],
                      *top["rules"]["items"]["properties"]],
        "optout.md": [*CONSENT_SCHEMA["properties"], *REGISTRY_SCHEMA["properties"],
                      *(f"api.{k}" for k in api)],
        "proof.md": [*AUDIT_SETTINGS_SCHEMA["properties"], *top["discovery"]["properties"]],
    }


def test_every_setting_is_documented() -> None:
    """Each key the settings schema accepts is named on the page that documents its table."""
    missing = [f"{page}: {name}" for page, names in _settings_by_page().items()
               for name in names if not _documented((DOCS / page).read_text("utf-8"), name)]
    assert not missing, f"settings the code accepts but the docs never name: {missing}"


def _piimw_commands() -> Iterator[tuple[str, list[str]]]:
    """``piimw ...`` invocations in the shell blocks, as argument lists (pipes split off)."""
    for path in pages():
        for block in parse(path).blocks:
            if block.lang not in ("sh", "bash", "console", "shell"):
                continue
            for line in block.code.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                while "piimw" in words:
                    words = words[words.index("piimw") + 1:]
                    end = words.index("|") if "|" in words else len(words)
                    yield block.where, words[:end]
                    words = words[end:]


COMMANDS = list(_piimw_commands())


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    """Every option a page shows exists (parsed only: nothing runs)."""
    from piimw.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: piimw {' '.join(argv)} does not parse (exit {e.code})")
