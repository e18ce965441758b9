"""How fast is ``piimw scan`` next to ``grep -E -c`` with a comparable pattern?

    python benchmarks/bench_scan.py [--mb 200] [--file /tmp/piimw-bench.log] [--jobs 0]

Generates (once) a realistic access/application log with about 1% of lines carrying an email
or a card number, then times both tools on the same file and prints MB/s side by side. grep
only counts matching lines; piimw also validates, locates, masks and reports every finding.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

GREP_PATTERN = (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                r"|\b([0-9][ -]?){12,18}[0-9]\b")

PATHS = ["/api/v1/orders", "/api/v1/users/{id}", "/health", "/static/app.js", "/api/v1/cart",
         "/login", "/api/v1/search", "/metrics"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "python-httpx/0.27",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4)"]


def _line(rng: random.Random, i: int) -> str:
    ts = f"2025-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}Z"
    kind = rng.random()
    rid = f"{rng.getrandbits(64):016x}"
    if kind < 0.005:
        return (f'{ts} INFO app.signup request_id={rid} created account for '
                f'user{i}@example.com plan=pro\n')
    if kind < 0.01:
        card = "4111 1111 1111 1111" if i % 2 else "5500-0000-0000-0004"
        return f'{ts} WARN payments request_id={rid} retry charge card={card} attempt=2\n'
    if kind < 0.5:
        path = rng.choice(PATHS)
        return (f'{ts} INFO access {rng.choice(["GET", "POST"])} {path} status=200 '
                f'duration_ms={rng.randint(1, 900)} request_id={rid} '
                f'ua="{rng.choice(AGENTS)}"\n')
    return ('{"ts":"' + ts + '","level":"info","logger":"app.worker","msg":"job finished",'
            f'"job_id":"{rid}","queue":"default","elapsed_ms":{rng.randint(5, 5000)},'
            f'"retries":{rng.randint(0, 3)}}}\n')


def generate(path: Path, mb: int) -> None:
    if path.exists() and path.stat().st_size >= mb * 1_000_000:
        return
    rng = random.Random(42)
    target = mb * 1_000_000
    size, i = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            chunk = "".join(_line(rng, i + k) for k in range(10000))
            f.write(chunk)
            size += len(chunk)
            i += 10000


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, out.stdout.strip() or out.stderr.strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--file", type=Path, default=Path("/tmp/piimw-bench.log"))
    ap.add_argument("--jobs", type=int, default=0)
    args = ap.parse_args()
    generate(args.file, args.mb)
    size_mb = args.file.stat().st_size / 1e6
    os.sync()
    subprocess.run(["cat", str(args.file)], stdout=subprocess.DEVNULL, check=False)  # warm
    g_time, g_out = timed(["grep", "-E", "-c", GREP_PATTERN, str(args.file)])
    p_time, _ = timed([sys.executable, "-m", "piimw.scan_cli", "scan", "--no-progress",
                       "--format", "json", "-o", os.devnull, "-j", str(args.jobs),
                       str(args.file)])
    p_count = subprocess.run(
        [sys.executable, "-m", "piimw.scan_cli", "scan", "--no-progress", "--format", "text",
         "-j", str(args.jobs), str(args.file)], capture_output=True, text=True, check=False
    ).stdout.count("\n")
    cpus = os.cpu_count()
    print(f"file: {args.file} ({size_mb:,.1f} MB), {cpus} CPU(s)")
    print(f"{'tool':<28}{'seconds':>10}{'MB/s':>10}   result")
    print(f"{'grep -E -c':<28}{g_time:>10.2f}{size_mb / g_time:>10.1f}   {g_out} matching lines")
    print(f"{'piimw scan (json report)':<28}{p_time:>10.2f}{size_mb / p_time:>10.1f}   "
          f"{p_count} findings")
    print(f"ratio piimw/grep throughput: {g_time / p_time:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
