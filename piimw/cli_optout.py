"""``piimw optout get|set|clear``: operators read and change one subject's registry record.

The subject is named by ``--subject hmac:...`` (a pseudonym, as in logs and policy rules) or
by ``--user-stdin`` (the raw user id read from standard input, so it stays out of the shell
history); raw ids are hashed at once and never printed. ``--user ID`` exists for scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import orjson

from piimw.errors import ConfigError, PIIMWError
from piimw.registry import RecordUnreadable, Registry, RegistryUnavailable, is_subject


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``get``, ``set`` and ``clear`` under an ``optout`` parser."""
    commands = parser.add_subparsers(dest="optout_command", metavar="{get,set,clear}")
    commands.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=os.environ.get("PIIMW_CONFIG", "piimw.toml"),
                       help="settings file (default: $PIIMW_CONFIG or piimw.toml)")
        p.add_argument("--registry", metavar="URL",
                       help="registry URL; overrides the settings file "
                            "(default: $PIIMW_REGISTRY_URL)")
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--subject", help="the subject pseudonym (hmac:...)")
        who.add_argument("--user-stdin", action="store_true",
                         help="read the raw user id from standard input")
        who.add_argument("--user", help="the raw user id (ends up in shell history)")

    common(commands.add_parser("get", help="print the subject's record as JSON"))
    setter = commands.add_parser("set", help="record opt-outs or opt-ins")
    common(setter)
    setter.add_argument("--opt-out", dest="opt_out", action="append", default=[],
                        metavar="USE", help="opt out of a use (repeatable)")
    setter.add_argument("--opt-out-category", dest="opt_out_category", action="append",
                        default=[], metavar="CATEGORY", help="opt out of a data category")
    setter.add_argument("--opt-in", dest="opt_in", action="append", default=[], metavar="USE",
                        help="record an explicit opt-in to a use (overrides earlier opt-outs)")
    setter.add_argument("--signal", default="cli", help="how it was recorded (default: cli)")
    common(commands.add_parser("clear", help="forget everything about the subject"))


HELP = "read or change a subject's opt-outs in the registry"


def _open(args: argparse.Namespace) -> Registry:
    """The application's registry. With a settings file, its hash key (``hash.key_env``) and
    key prefix are used even when ``--registry`` names the backend: subjects keyed any other
    way would be records the application never reads."""
    url = args.registry or os.environ.get("PIIMW_REGISTRY_URL")
    if os.path.exists(args.config):
        from piimw.config import Config

        # services=False: reading the registry settings must not open the audit trail (it
        # asked for the audit key) nor start the discovery sampler.
        registry = Registry.from_config(Config.from_file(args.config, services=False),
                                        url=url)
        if registry is None:
            raise ConfigError("no [registry] section", source=args.config)
        return registry
    if url is None:
        raise ConfigError("no registry: pass --registry URL, set PIIMW_REGISTRY_URL or "
                          "configure [registry] in the settings file")
    from piimw.transform import Hasher

    return Registry(url, Hasher.from_env(), cache=False)


def _subject(args: argparse.Namespace, registry: Registry, stdin: TextIO) -> str:
    if args.subject is not None:
        if not is_subject(args.subject):
            raise ValueError("--subject takes a registry pseudonym (hmac:<kid>.registry:...)")
        return str(args.subject)
    raw = stdin.readline().strip() if args.user_stdin else str(args.user)
    if not raw:
        raise ValueError("no user id given")
    return registry.adopt(raw)


def run(args: argparse.Namespace, *, stdin: TextIO | None = None,
        stdout: TextIO | None = None) -> int:
    """Execute the parsed ``optout`` command; the exit status (0 ok, 1 unavailable, 2 usage)."""
    out = stdout or sys.stdout
    err = sys.stderr
    try:
        registry = _open(args)
    except PIIMWError as e:  # messages name the setting, never the URL or a secret
        print(f"piimw optout: {e}", file=err)
        return 2
    try:
        subject = _subject(args, registry, stdin or sys.stdin)
        command = args.optout_command
        if command == "get":
            record = registry.record(subject)
        elif command == "set":
            if not (args.opt_out or args.opt_out_category or args.opt_in):
                raise ValueError("nothing to set: give --opt-out, --opt-out-category or --opt-in")
            record = registry.record(subject)
            if args.opt_out or args.opt_out_category:
                record = registry.opt_out(subject, args.opt_out, args.opt_out_category,
                                          signal=args.signal)
            if args.opt_in:
                record = registry.opt_in(subject, args.opt_in, signal=args.signal)
        else:
            existed = registry.clear(subject)
            out.write(orjson.dumps({"subject": subject, "cleared": existed}).decode() + "\n")
            return 0
        doc = {"subject": subject, **record.as_json()}
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    except ValueError as e:
        print(f"piimw optout: {e}", file=err)
        return 2
    except RecordUnreadable:
        print("piimw optout: the subject's record is unreadable; `piimw optout clear` "
              "removes it", file=err)
        return 1
    except RegistryUnavailable:
        print("piimw optout: the registry is unavailable", file=err)
        return 1
    finally:
        registry.close()


def _command() -> Any:
    from piimw.cli import Command

    return Command("optout", HELP, add_arguments, run)


#: For ``piimw.cli.COMMANDS["optout"] = "piimw.cli_optout:COMMAND"``.
COMMAND = _command()

__all__ = ["COMMAND", "HELP", "add_arguments", "run"]
