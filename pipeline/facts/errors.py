"""Errors of a fact load that modules below the service raise too."""

from __future__ import annotations


class FactLoadError(Exception):
    """The batch was refused (unknown keys under a blocking strategy, a value that does not fit); nothing loaded."""
