"""Typo suggestions: the contrib extensions ``pg_trgm`` (trigram similarity, its index operator classes) and
``fuzzystrmatch`` (levenshtein), and trigram indexes on the name columns looked up across a whole table.

Both extensions ship with PostgreSQL and are trusted (PostgreSQL 13+): a role that may create objects in the
database creates them; otherwise a DBA runs these two statements once and the migration finds them there."""

import django.contrib.postgres.indexes
from django.db import migrations

EXTENSIONS = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public",
    "CREATE EXTENSION IF NOT EXISTS fuzzystrmatch WITH SCHEMA public",
]


def trigram(field: str, name: str) -> django.contrib.postgres.indexes.GinIndex:
    return django.contrib.postgres.indexes.GinIndex(fields=[field], name=name, opclasses=["gin_trgm_ops"])


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0011_groups_fact_uploads"),
    ]

    operations = [
        *(migrations.RunSQL(statement, reverse_sql=migrations.RunSQL.noop) for statement in EXTENSIONS),
        migrations.AddIndex(model_name="annuityplan", index=trigram("short_name", "annuityplan_short_name_trgm")),
        migrations.AddIndex(model_name="annuityplan", index=trigram("customer_name", "annuityplan_customer_name_trgm")),
        migrations.AddIndex(model_name="organization", index=trigram("name", "organization_name_trgm")),
        migrations.AddIndex(model_name="productline", index=trigram("name", "productline_name_trgm")),
    ]
