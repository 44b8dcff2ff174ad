#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refgov.settings.dev")
    from pipeline.facts.prefetch import start_from_argv

    start_from_argv(sys.argv, Path(__file__).resolve().parent / "config")  # a workbook parses while Django starts
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
