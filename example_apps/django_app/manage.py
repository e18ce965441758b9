#!/usr/bin/env python
"""``python example_apps/django_app/manage.py runserver`` from anywhere in the checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # The repository root, so that ``example_apps.django_app`` imports without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_app.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
