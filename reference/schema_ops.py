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
