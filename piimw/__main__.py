"""``python -m piimw``: the same as the ``piimw`` command."""

from __future__ import annotations

import sys

from piimw.cli import main

if __name__ == "__main__":
    sys.exit(main())
