"""Records per second through a logging handler, with and without piimw's ``PIIFilter``.

    python benchmarks/bench_logging.py [--records N] [--repeats R]

Each scenario logs the same records through a ``StreamHandler`` formatting to memory, once bare
and once with the filter, in alternation; the median of the repeats is reported with the ratio.
"Inside a request" runs with an active exchange holding six known values (what a signup request
brings in); "outside" has detectors only.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piimw.config import Config
from piimw.exchange import Exchange, activate
from piimw.logging import PIIFilter

EMAIL = "jane.doe.8841@example.org"
NAME = "Zqbench"
CARD = "4111111111111111"
PHONE = "+44 20 7946 0123"
IP = "203.0.113.77"
TOKEN = "tok_5f2a9c0d7e1b4a36"


def exchange() -> Exchange:
    ex = Exchange(Config(), "POST", "/signup", [])
    for value, category in ((EMAIL, "email"), (NAME, "name"), (CARD, "card"), (PHONE, "phone"),
                            (IP, "ip"), (TOKEN, "secret")):
        ex.known.add(value, category)
    return ex


Emit = Callable[[logging.Logger], None]


def clean_line(log: logging.Logger) -> None:
    log.info("GET /api/orders/%s 200 in %.1f ms (%d items)", "A-1029", 12.5, 3)


def clean_dict(log: logging.Logger) -> None:
    log.info("order created %s", {"order": "A-1029", "items": 3, "total": "19.90",
                                  "currency": "EUR", "status": "pending"})


def pii_args(log: logging.Logger) -> None:
    log.info("signup %s", {"email": EMAIL, "name": NAME, "card": CARD, "plan": "pro"})


def pii_fstring(log: logging.Logger) -> None:
    log.warning(f"could not send receipt to {EMAIL} from {IP}")


def access_line(log: logging.Logger) -> None:
    log.info('%s - "%s %s HTTP/%s" %d', f"{IP}:51234", "GET",
             f"/search?q=shoes&email={EMAIL}", "1.1", 200)


SCENARIOS: list[tuple[str, Emit, str]] = [
    ("clean line (3 args)", clean_line, "app"),
    ("clean dict arg", clean_dict, "app"),
    ("PII in dict arg", pii_args, "app"),
    ("PII in f-string", pii_fstring, "app"),
    ("access line with PII", access_line, "uvicorn.access"),
]


def make_logger(name: str, filtered: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if filtered:
        handler.addFilter(PIIFilter())
    log = logging.getLogger(f"bench.{name}.{'f' if filtered else 'b'}")
    if name == "uvicorn.access":
        log = logging.Logger("uvicorn.access")  # the filter keys on this name
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, stream


def rate(emit: Emit, log: logging.Logger, stream: io.StringIO, n: int,
         context: Callable[[], AbstractContextManager[object]]) -> float:
    stream.seek(0)
    stream.truncate()
    with context():
        start = time.perf_counter()
        for _ in range(n):
            emit(log)
        elapsed = time.perf_counter() - start
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ex = exchange()
    contexts: list[tuple[str, Callable[[], AbstractContextManager[object]]]] = [
        ("in request", lambda: activate(ex)), ("outside", nullcontext)]
    print(f"piimw log filter: {args.records} records x {args.repeats} repeats, median records/s")
    print(f"Python {sys.version.split()[0]}")
    header = f"{'scenario':<26}{'context':<12}{'bare rec/s':>12}{'filtered rec/s':>16}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, emit, logger_name in SCENARIOS:
        bare_log, bare_stream = make_logger(logger_name, False)
        filt_log, filt_stream = make_logger(logger_name, True)
        for ctx_label, ctx in contexts:
            for lg, st in ((bare_log, bare_stream), (filt_log, filt_stream)):  # warm up
                rate(emit, lg, st, 500, ctx)
            bare: list[float] = []
            filt: list[float] = []
            for _ in range(args.repeats):
                bare.append(rate(emit, bare_log, bare_stream, args.records, ctx))
                filt.append(rate(emit, filt_log, filt_stream, args.records, ctx))
            b, f = statistics.median(bare), statistics.median(filt)
            print(f"{label:<26}{ctx_label:<12}{b:>12,.0f}{f:>16,.0f}{b / f:>7.1f}x")


if __name__ == "__main__":
    main()
