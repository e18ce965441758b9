"""Print the detectors' precision/recall table on the labeled corpus.

Run as ``python tests/detect/report.py`` or ``python -m tests.detect.report`` from the repository
root; ``-v`` also lists every miss and false alarm.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detect_corpus import evaluate, table


def main() -> None:
    scores = evaluate()
    print(table(scores))
    if "-v" in sys.argv:
        for name, score in scores.items():
            for line in score.misses:
                print(f"MISS  {name:16s} {line}")
            for line in score.false_alarms:
                print(f"FALSE {name:16s} {line}")


if __name__ == "__main__":
    main()
