"""PostgreSQL helpers every app may use: identifier checks, SQL composition, advisory locks."""
