"""``piimw map`` (the data map) and ``piimw suggest`` (x-pii annotations for what was seen).

Wired into ``piimw`` as :data:`MAP` and :data:`SUGGEST` (``"map": "piimw.datamap_cli:MAP"``,
``"suggest": "piimw.datamap_cli:SUGGEST"``); :func:`register` does the same for any other
argparse tree.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson

from piimw.cli import Command
from piimw.errors import ConfigError

EXTENSIONS = {".md": "md", ".json": "json", ".yml": "fides", ".yaml": "fides", ".csv": "csv",
              ".html": "html", ".htm": "html"}


MAP_HELP = "the data map: declared and observed personal data per route"
SUGGEST_HELP = "propose x-pii annotations (JSON Patch) for undeclared PII seen in traffic"


def map_arguments(m: argparse.ArgumentParser) -> None:
    from piimw.datamap import FORMATS

    m.add_argument("--config", type=Path, default=Path("piimw.toml"))
    m.add_argument("--audit", action="append", default=[], metavar="URL",
                   help="audit trail to read observations from (repeatable)")
    m.add_argument("--format", choices=FORMATS, default=None,
                   help="md, json, fides (fideslang dataset YAML), csv (GDPR Art. 30 "
                        "skeleton) or html; default from -o's extension, else md")
    m.add_argument("-o", "--output", type=Path, default=None, help="file (default stdout)")
    m.add_argument("--since", default=None, help="observations since (YYYY-MM-DD or 7d)")


def suggest_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--config", type=Path, default=Path("piimw.toml"))
    s.add_argument("--audit", action="append", default=[], metavar="URL", required=True)
    s.add_argument("--since", default=None)
    s.add_argument("--min-count", type=int, default=1,
                   help="ignore observations seen fewer times (default 1)")
    s.add_argument("-o", "--output", type=Path, default=None,
                   help="a directory: one <schema>.patch.json per file (default: stdout, "
                        "one JSON object keyed by schema file)")


def _fail(message: str) -> int:
    print(f"piimw: {message}", file=sys.stderr)
    return 2


def _why(e: BaseException) -> str:
    """An OS error's reason, else only the exception's type: other messages (a parser's, a
    database's) may quote what the trail holds."""
    strerror = getattr(e, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else type(e).__name__


def _load(args: argparse.Namespace) -> Any:
    from piimw.config import Config

    return Config.from_file(args.config, services=False)


def _since(args: argparse.Namespace) -> str | None:
    from piimw.audit.report import parse_time

    return parse_time(args.since) if args.since else None


def run_map(args: argparse.Namespace) -> int:
    from piimw.datamap import build, render

    fmt = args.format or (EXTENSIONS.get(args.output.suffix.lower(), "md")
                          if args.output else "md")
    try:
        since = _since(args)
    except ValueError as e:
        return _fail(str(e))  # quotes only the option's own text
    try:
        config = _load(args)
        dm = build(config, args.audit, since=since)
    except ConfigError as e:
        return _fail(str(e))
    except (OSError, ValueError, EOFError, sqlite3.Error) as e:
        return _fail(f"cannot build the data map: {_why(e)}")
    text = render(dm, fmt)
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    try:
        args.output.write_text(text, "utf-8")
    except OSError as e:
        return _fail(f"cannot write {args.output}: {_why(e)}")
    print(f"piimw: wrote {args.output} ({fmt}, {len(dm.declared)} declared, "
          f"{len(dm.observed)} observed)", file=sys.stderr)
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    from piimw.datamap import observed, suggest

    try:
        since = _since(args)
    except ValueError as e:
        return _fail(str(e))
    try:
        config = _load(args)
        seen = [o for o in observed(args.audit, since=since) if o.count >= args.min_count]
    except ConfigError as e:
        return _fail(str(e))
    except (OSError, ValueError, EOFError, sqlite3.Error) as e:
        return _fail(f"cannot read: {_why(e)}")
    result = suggest(config, seen)
    for note in result.notes:
        print(f"piimw suggest: {note}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(orjson.dumps(result.patches, option=orjson.OPT_INDENT_2).decode()
                         + "\n")
        return 0
    try:
        _write_patches(args.output, result.patches)
    except OSError as e:
        return _fail(f"cannot write to {args.output}: {_why(e)}")
    return 0


def _write_patches(directory: Path, patches: dict[str, list[dict[str, Any]]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, ops in patches.items():
        target = directory / (Path(name).name + ".patch.json")
        target.write_bytes(orjson.dumps(ops, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"piimw suggest: wrote {target} ({len(ops)} operation(s))", file=sys.stderr)


MAP = Command("map", MAP_HELP, map_arguments, run_map)
SUGGEST = Command("suggest", SUGGEST_HELP, suggest_arguments, run_suggest)
