"""``piimw scan``: find personal data in files; a CI gate (exit 1 while findings remain).

Output as text, JSON or SARIF 2.1.0 (for code-scanning dashboards), streamed so a scan of a
huge log with many findings runs in constant memory. Exit codes: 0 clean, 1 findings,
2 usage error. Wired into ``piimw`` as :data:`COMMAND` (``"scan": "piimw.scan_cli:COMMAND"``);
:func:`register` does the same for any other argparse tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from piimw.cli import Command
from piimw.taxonomy import label, tier

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


HELP = "find personal data already leaked into files (logs, dumps, trees)"
DESCRIPTION = ("Scan files, directories (recursively), .gz files or stdin (-) for personal data. "
               "Exit 0 when clean, 1 when findings remain, 2 on a usage error. Findings show a "
               "masked preview, never the value.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, .gz, or - (stdin)")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("-o", "--output", type=Path, default=None, help="report file (default stdout)")
    p.add_argument("--known", type=Path, default=None, metavar="FILE",
                   help="known values to look for, one per line, optionally CATEGORY<TAB>VALUE")
    p.add_argument("--detectors", default=None,
                   help="comma-separated detector names (default: all)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="accepted findings (fingerprints) to leave out")
    p.add_argument("--write-baseline", type=Path, default=None, metavar="FILE",
                   help="write every current finding's fingerprint to FILE and exit 0")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--redact", type=Path, default=None, metavar="OUTDIR",
                       help="write cleaned copies under OUTDIR (same line structure)")
    group.add_argument("--in-place", action="store_true",
                       help="rewrite the files themselves, cleaned (exit 0 once cleaned)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip files matching GLOB (repeatable)")
    p.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (default: CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class _Usage(Exception):
    pass


def _known(path: Path) -> list[tuple[str, str]]:
    from piimw.taxonomy import UnknownCategoryError, resolve

    out = []
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _Usage(f"cannot read --known file: {getattr(e, 'strerror', None) or 'not UTF-8'}"
                     ) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cat, tab, value = line.partition("\t")
        if not tab:
            cat, value = "user", line
        try:
            category = resolve(cat.strip()) if cat.strip() != "user" else "user"
        except UnknownCategoryError:
            raise _Usage(f"--known line {n}: unknown category") from None
        out.append((value.strip(), category))
    return out


class Writer:
    """Streams findings in one of the three formats."""

    def __init__(self, fmt: str, out: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.first = True
        self.rules: dict[str, None] = {}

    def start(self) -> None:
        if self.fmt == "json":
            self.out.write('{"version":1,"findings":[')
        elif self.fmt == "sarif":
            self.out.write(f'{{"$schema":"{SARIF_SCHEMA}","version":"2.1.0","runs":[{{'
                           '"columnKind":"unicodeCodePoints","results":[')

    def hit(self, h: Any) -> None:
        path, preview = _text(h.path), _text(h.preview)
        field = _text(h.field) if h.field else None
        if self.fmt == "text":
            where = f" in {field}" if field else ""
            self.out.write(f"{path}:{h.line}:{h.col}-{h.end_col}: {h.category} "
                           f"[{h.detector}] {preview}{where}\n")
            return
        sep = "" if self.first else ","
        self.first = False
        if self.fmt == "json":
            doc = dict(h.as_dict(), path=path, preview=preview)
            if field:
                doc["field"] = field
            self.out.write(sep + "\n" + orjson.dumps(doc).decode())
            return
        self.rules[h.category] = None
        result = {
            "ruleId": h.category, "level": _level(h.category),
            "message": {"text": f"Possible {label(h.category)} ({h.category}) found by the "
                                f"{h.detector} detector: {preview}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(h.path), "uriBaseId": "SRCROOT"},
                "region": {"startLine": h.line, "startColumn": h.col,
                           "endColumn": h.end_col}}}],
            "partialFingerprints": {"piimwFinding/v1": h.fingerprint},
        }
        if field:
            result["properties"] = {"field": field}
        self.out.write(sep + "\n" + orjson.dumps(result).decode())

    def finish(self, summary: Any) -> None:
        if self.fmt == "json":
            self.out.write("\n],\"summary\":" + orjson.dumps(summary.as_dict()).decode() + "}\n")
        elif self.fmt == "sarif":
            from piimw import __version__

            rules = [{"id": c, "name": label(c),
                      "shortDescription": {"text": f"Personal data: {c}"},
                      "fullDescription": {"text": f"A value that looks like {label(c)} "
                                                  f"({tier(c)} tier) was found in a file."},
                      "defaultConfiguration": {"level": _level(c)},
                      "properties": {"tier": tier(c)}} for c in sorted(self.rules)]
            tool = {"driver": {"name": "piimw", "version": __version__,
                               "informationUri": "https://pypi.org/project/piimw/",
                               "rules": rules}}
            base = {"SRCROOT": {"uri": Path.cwd().as_uri() + "/"}}
            self.out.write("\n],\"tool\":" + orjson.dumps(tool).decode()
                           + ",\"originalUriBaseIds\":" + orjson.dumps(base).decode()
                           + ",\"properties\":" + orjson.dumps(summary.as_dict()).decode()
                           + "}]}\n")


def _level(category: str) -> str:
    return "error" if tier(category) == "sensitive" else "warning"


def _text(text: str) -> str:
    """Valid UTF-8 for any report: bytes a file name could not decode (``os.walk`` keeps them
    as surrogates) are shown as ``\\xe9``; JSON, SARIF and a UTF-8 terminal reject them."""
    return _bytes(text).decode("utf-8", "backslashreplace")


def _bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoding produced
        return text.encode("utf-8", "backslashreplace")


def _uri(path: str) -> str:
    from urllib.parse import quote

    if path == "<stdin>":
        return "stdin"
    return quote(_bytes(path.lstrip("./") if path.startswith("./") else path))


def run(args: argparse.Namespace) -> int:
    from piimw.scan import Options, iter_inputs, read_baseline, scan, write_baseline

    try:
        if args.in_place and "-" in args.paths:
            raise _Usage("--in-place cannot rewrite standard input; use --redact OUTDIR")
        if args.jobs < 0:
            raise _Usage("--jobs must be 0 (one per CPU) or more")
        skipped: list[str] = []
        try:
            inputs = list(iter_inputs(args.paths, args.exclude, skipped))
        except FileNotFoundError as e:
            raise _Usage(f"no such file or directory: {e.args[0]}") from None
        baseline: frozenset[str] = frozenset()
        if args.baseline is not None and args.baseline.exists():
            try:
                baseline = read_baseline(args.baseline)
            except (OSError, ValueError):
                raise _Usage("--baseline is not a piimw scan baseline") from None
        elif args.baseline is not None and args.write_baseline is None:
            raise _Usage("--baseline file does not exist (create it with --write-baseline)")
        detectors = tuple(d.strip() for d in args.detectors.split(",")) if args.detectors \
            else None
        options = Options(detectors=detectors, known=_known(args.known) if args.known else [],
                          jobs=args.jobs, baseline=baseline, redact_dir=args.redact,
                          in_place=args.in_place, progress=not args.no_progress)
        if detectors:
            from piimw.detect import Detectors

            try:
                Detectors(list(detectors))
            except (ValueError, KeyError):
                raise _Usage("unknown detector name in --detectors") from None
    except _Usage as e:
        print(f"piimw scan: {e}", file=sys.stderr)
        return 2
    out: IO[str] = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    writer = Writer(args.format, out)
    try:
        writer.start()
        summary = scan(inputs, options,
                       (lambda h: None) if args.write_baseline else writer.hit)
        summary.skipped = skipped
        writer.finish(summary)
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    for path, error in summary.unreadable:  # names and error types only, never content
        print(f"piimw scan: {_text(path)}: could not be read to its end ({error}); what was "
              "readable was scanned" + (", the file left as it was" if args.in_place or
                                        args.redact else ""), file=sys.stderr)
    incomplete = 2 if summary.unreadable else 0
    if args.write_baseline is not None:
        write_baseline(args.write_baseline, summary.fingerprints)
        print(f"piimw scan: baseline of {len(summary.fingerprints)} finding(s) written to "
              f"{args.write_baseline}", file=sys.stderr)
        return incomplete
    mb = summary.bytes / 1e6
    print(f"piimw scan: {summary.findings} finding(s) in {summary.files_with_findings} of "
          f"{summary.files} file(s)"
          + (f", {summary.suppressed} accepted by the baseline" if summary.suppressed else "")
          + (f", {len(skipped)} binary file(s) skipped" if skipped else "")
          + (f", {len(summary.unreadable)} not readable to the end" if summary.unreadable
             else "")
          + f"; {mb:,.1f} MB in {summary.seconds:.1f}s", file=sys.stderr)
    if args.in_place:
        return incomplete
    return 1 if summary.findings else incomplete


COMMAND = Command("scan", HELP, add_arguments, run, DESCRIPTION)
