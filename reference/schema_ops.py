"""Migration operations for the ``business`` schema.

Connections use ``search_path=public,business``: Django's own tables stay in ``public`` and the reference and fact
tables are found by their bare names. A migration that creates tables in ``business`` starts with
``use_business_schema()``, which lasts until the migration's transaction commits.
"""

from django.db import migrations

from .registry import SCHEMA


def create_business_schema() -> migrations.RunSQL:
    return migrations.RunSQL(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"', migrations.RunSQL.noop)


def use_business_schema() -> migrations.RunSQL:
    sql = f'SET LOCAL search_path TO "{SCHEMA}", public'
    return migrations.RunSQL(sql, sql)


def drop_pattern_indexes() -> migrations.RunSQL:
    """Drop the ``*_like`` (varchar_pattern_ops) indexes Django adds to varchar keys: business keys are matched by
    equality only, and every extra index slows the bulk writes of preload and auto-derive."""
    sql = f"""
    DO $$
    DECLARE r record;
    BEGIN
      FOR r IN SELECT indexname FROM pg_indexes WHERE schemaname = '{SCHEMA}' AND indexname LIKE '%\\_like' LOOP
        EXECUTE format('DROP INDEX {SCHEMA}.%I', r.indexname);
      END LOOP;
    END $$;
    """
    return migrations.RunSQL(sql, migrations.RunSQL.noop)
