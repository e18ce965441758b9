"""``piimw audit verify`` and ``piimw audit report``.

:func:`register` adds the ``audit`` command to the main parser; every leaf parser sets
``func(args) -> int`` (the exit code). Exit codes: 0 ok, 1 tampering found, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

import orjson

from piimw._paths import audit_url
from piimw.audit.records import DEFAULT_KEY_ENV, AuditKey
from piimw.cli import Command
from piimw.errors import ConfigError

HELP = "verify the audit trail or report from it"


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``verify`` or ``report``."""
    return int(args.audit_func(args))


def add_arguments(audit: argparse.ArgumentParser) -> None:
    sub = audit.add_subparsers(dest="audit_command", metavar="{verify,report}")
    sub.required = True

    v = sub.add_parser(
        "verify", help="detect deleted, inserted, altered, reordered or cut-off records",
        description="Verify the chain, MACs and checkpoints of an audit trail. Give rotated "
                    "files oldest first. Exit 0 if intact, 1 if tampering is found.")
    v.add_argument("sources", nargs="+", metavar="PATH_OR_URL",
                   help="audit.jsonl, audit.jsonl.1.gz, sqlite:///path/audit.db")
    v.add_argument("--key-env", default=None,
                   help=f"environment variable holding the key (default {DEFAULT_KEY_ENV})")
    v.add_argument("--no-key", action="store_true",
                   help="check links and order only (no authenticity)")
    v.add_argument("--anchors", type=Path, default=None,
                   help="a file of checkpoint lines kept elsewhere (e.g. from the log system)")
    v.add_argument("--no-head", action="store_true",
                   help="ignore the chain head stored beside the trail")
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.set_defaults(audit_func=run_verify)

    r = sub.add_parser("report", help="counts by route, category, action and reason",
                       description="Counts of requests and decisions over a time range.")
    r.add_argument("sources", nargs="*", metavar="PATH_OR_URL",
                   help="trail(s) to read (default: audit.url from --config)")
    r.add_argument("--config", type=Path, default=None, help="piimw.toml (for audit.url)")
    r.add_argument("--since", default=None, help="YYYY-MM-DD[THH:MM[:SS]] (UTC) or 24h, 7d")
    r.add_argument("--until", default=None, help="exclusive end, same forms as --since")
    r.add_argument("--format", choices=("text", "json"), default="text")
    r.set_defaults(audit_func=run_report)


def _fail(message: str) -> int:
    print(f"piimw audit: {message}", file=sys.stderr)
    return 2


def _why(e: BaseException) -> str:
    """Our own message, an OS error's reason, or only the type: a database's or a
    decompressor's message is not ours to vouch for."""
    if isinstance(e, ConfigError):
        return str(e)
    strerror = getattr(e, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else type(e).__name__


def run_verify(args: argparse.Namespace) -> int:
    from piimw.audit.verify import render_text, verify

    key = None
    if not args.no_key:
        var = args.key_env or DEFAULT_KEY_ENV
        try:
            key = AuditKey.from_env(var, os.environ.get(var + "_ID"))
        except ConfigError:
            return _fail(f"set the environment variable {var} to the trail's key "
                         "(or use --no-key to check links and order only)")
    anchors: list[bytes] = []
    if args.anchors is not None:
        try:
            anchors = [ln for ln in args.anchors.read_bytes().splitlines()
                       if b'"checkpoint"' in ln]
        except OSError as e:
            return _fail(f"cannot read anchors: {e.strerror}")
    try:
        report = verify(args.sources, key, use_head=not args.no_head, anchors=anchors)
    except (OSError, ConfigError, EOFError, sqlite3.Error) as e:
        return _fail(f"cannot read the trail: {_why(e)}")
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
    else:
        print(render_text(report))
    return 0 if report.ok else 1


def _sources_from_config(path: Path) -> list[str]:
    import importlib

    tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    data = tomllib.loads(path.read_text("utf-8"))
    url = (data.get("audit") or {}).get("url", "jsonl://piimw-audit.jsonl")
    return [audit_url(str(url), path.resolve().parent)]  # as the application resolves it


def run_report(args: argparse.Namespace) -> int:
    from piimw.audit.report import parse_time, records, render_text, summarize

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as e:
        return _fail(str(e))
    sources = list(args.sources)
    if not sources:
        try:
            sources = _sources_from_config(args.config or Path("piimw.toml"))
        except (OSError, ValueError) as e:
            return _fail(f"no trail given and none found in the configuration ({e})")
    try:
        summary = summarize(records(sources, since, until), since, until)
    except (OSError, ConfigError, EOFError, sqlite3.Error) as e:
        return _fail(f"cannot read the trail: {_why(e)}")
    if args.format == "json":
        sys.stdout.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
    else:
        print(render_text(summary))
    return 0


COMMAND = Command("audit", HELP, add_arguments, run)
