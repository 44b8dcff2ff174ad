"""The project's frame (settings, URLs) and helpers every app may use (``refgov.db``: identifiers, SQL composition,
advisory locks; errors, formulae, redaction, HTML badges); imports no app except where the URLs name their views."""
