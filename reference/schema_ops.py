"""Migration operations for the ``business`` schema.

Connections use ``search_path=public,business``: Django's own tables stay in ``public`` and the reference and fact
tables are found by their bare names. A migration that creates tables in ``business`` starts with
``use_business_schema()``, which lasts until the migration's transaction commits.

``RunSQL`` runs text without parameters: the statements are composed with ``psycopg.sql`` and rendered here.
"""

from django.db import migrations
from psycopg import sql

from .registry import SCHEMA


def create_business_schema() -> migrations.RunSQL:
    statement = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))
    return migrations.RunSQL(statement.as_string(), migrations.RunSQL.noop)


def use_business_schema() -> migrations.RunSQL:
    statement = sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(SCHEMA)).as_string()
    return migrations.RunSQL(statement, statement)


def drop_pattern_indexes() -> migrations.RunSQL:
    """Drop the ``*_like`` (varchar_pattern_ops) indexes Django adds to varchar keys: business keys are matched by
    equality only, and every extra index slows the bulk writes of preload and auto-derive."""
    statement = sql.SQL(
        """
    DO $$
    DECLARE r record;
    BEGIN
      FOR r IN SELECT indexname FROM pg_indexes WHERE schemaname = {schema} AND indexname LIKE '%\\_like' LOOP
        EXECUTE format('DROP INDEX %I.%I', {schema}, r.indexname);
      END LOOP;
    END $$;
    """
    ).format(schema=sql.Literal(SCHEMA))
    return migrations.RunSQL(statement.as_string(), migrations.RunSQL.noop)
