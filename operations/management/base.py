"""Shared shape of refgov commands: exit 0 only on success, one clear line on stderr otherwise, ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from operations.management.process_exit import exit_without_teardown
from pipeline.config import ConfigError
from pipeline.preload import PreloadError
from pipeline.sources.legacy_mysql import SourceError

EXPECTED_ERRORS = (ConfigError, PreloadError, SourceError)


class Failed(Exception):
    """The command ran and found a failure; the message is the stderr line, the payload the --json output."""

    def __init__(self, message: str, payload: dict | None = None):
        super().__init__(message)
        self.payload = payload


class RefgovCommand(BaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON summary object on stdout")

    def run(self, **options: Any) -> dict:
        raise NotImplementedError

    def run_from_argv(self, argv: list[str]) -> None:
        """From the command line only (``call_command`` does not come here): a command that failed has raised
        ``SystemExit`` by now; one that succeeded ends its process without the interpreter's teardown."""
        super().run_from_argv(argv)
        exit_without_teardown()

    def emit_text(self, payload: dict) -> None:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            payload = self.run(**options)
        except Failed as exc:
            if options["json"] and exc.payload is not None:
                self.stdout.write(json.dumps(exc.payload, ensure_ascii=False, indent=2, default=str))
            elif exc.payload is not None:
                self.emit_text(exc.payload)
            self._fail(str(exc))
        except EXPECTED_ERRORS as exc:
            if options["json"]:
                self.stdout.write(json.dumps({"status": "error", "error": str(exc)}, ensure_ascii=False))
            self._fail(str(exc))
        if options["json"]:
            self.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
        else:
            self.emit_text(payload)

    def _fail(self, message: str) -> None:
        line = " | ".join(part.strip() for part in message.splitlines() if part.strip())
        self.stderr.write(f"{self.name_for_errors}: {line}")
        sys.exit(1)

    @property
    def name_for_errors(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]
