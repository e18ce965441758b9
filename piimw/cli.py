"""The ``piimw`` command line.

Each subcommand is a :class:`Command` living in its own module and named in :data:`COMMANDS`
as ``"module:attribute"``; adding one (``scan``, ``audit``, ``map``, ``optout``) is one module
and one line here. Modules are imported when the parser is built, so they keep heavy or
optional imports inside ``run``. A :class:`~piimw.errors.ConfigError` from any command is
printed (it names the file and pointer, never a value) and exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from piimw import __version__
from piimw.config import Config
from piimw.errors import ConfigError
from piimw.plan import Plan


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how to declare its arguments, and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""  # the longer text for ``piimw NAME --help`` (default: ``help``)


#: Subcommand name -> ``"module:attribute"`` of its :class:`Command`, in help order.
COMMANDS: dict[str, str] = {
    "check": "piimw.cli:CHECK",
    "demo": "piimw.demo:COMMAND",
    "optout": "piimw.cli_optout:COMMAND",
    "scan": "piimw.scan_cli:COMMAND",
    "audit": "piimw.audit.cli:COMMAND",
    "map": "piimw.datamap_cli:MAP",
    "suggest": "piimw.datamap_cli:SUGGEST",
}


def load(spec: str) -> Command:
    module, _, attr = spec.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, Command):
        raise TypeError(f"{spec} is not a piimw.cli.Command")
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="piimw", description="Stop personal data leaking out of Python web applications.")
    parser.add_argument("--version", action="version", version=f"piimw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, spec in COMMANDS.items():
        try:
            command = load(spec)
        except (ImportError, AttributeError, TypeError) as e:  # one broken command must not
            command = _unavailable(name, e)  # take the others down
        p = sub.add_parser(name, help=command.help,
                           description=command.description or command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def _unavailable(name: str, error: Exception) -> Command:
    reason = f"{type(error).__name__}: {error}"

    def run(args: argparse.Namespace) -> int:
        print(f"piimw {name}: unavailable ({reason})", file=sys.stderr)
        return 2

    return Command(name, f"(unavailable: {reason})", lambda parser: None, run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except ConfigError as e:
        print(f"piimw: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- piimw check ----------------------------------------------------------------------------
def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="path to piimw.toml")


def _check(args: argparse.Namespace) -> int:
    """Load and validate a configuration as the middleware would, then show what it plans."""
    cfg = Config.from_file(args.config, services=False)
    routes = sorted(cfg.routes, key=lambda r: (r.template, r.method))
    rules = list(cfg.policy.rules)
    print(f"{cfg.source}: OK")
    print(f"  environment  {cfg.environment}")
    print(f"  routes       {len(routes)} with a plan")
    rule_ids = f" ({', '.join(r.id for r in rules)})" if rules else ""
    print(f"  rules        {len(rules)}{rule_ids}")
    print(f"  hash key     {'set' if cfg.hasher is not None else 'not set'}")
    for route in routes:
        op = f"  (operation {route.operation_id})" if route.operation_id else ""
        print(f"\n{route.method} {route.template}{op}")
        bodies: list[tuple[str, Plan]] = []
        if route.query is not None:
            bodies.append(("query", route.query))
        if route.request is not None:
            bodies.append(("request", route.request.plan))
        for status, body in sorted(route.responses.items()):
            bodies.append((f"response {status}", body.plan))
        for label, plan in bodies:
            _print_plan(label, plan)
    return 0


def _print_plan(label: str, plan: Plan) -> None:
    entries = list(plan.entries)
    if not entries:
        print(f"  {label:<13}(validated, nothing tagged)")
        return
    width = max(len(e.pattern) for e in entries)
    for i, entry in enumerate(entries):
        tag = entry.tag
        head = f"  {label:<13}" if i == 0 else " " * 15
        if tag.reviewed:
            what = "not PII (x-pii: false)"
        else:
            what = f"{', '.join(tag.categories)}  uses {', '.join(tag.uses)}"
            if tag.action is not None:
                what += f"  action {tag.action}"
            if tag.implicit:
                what += "  (writeOnly/password)"
        print(f"{head}{entry.pattern:<{width}}  {what}")


CHECK = Command("check", "validate a piimw.toml and list the routes and fields it protects",
                _check_arguments, _check)
