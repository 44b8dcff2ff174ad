"""Phases 2 and 3: fact files, their normalisation, auto-derived references and the fact load."""
