"""The schema of the part tables a large CSV is copied into in parallel (pipeline.facts.csv_parts)."""

from django.db import migrations

from pipeline.facts.csv_parts import STAGING_SCHEMA


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0006_fact_load_perf")]

    operations = [
        migrations.RunSQL(
            f'CREATE SCHEMA IF NOT EXISTS "{STAGING_SCHEMA}"', f'DROP SCHEMA IF EXISTS "{STAGING_SCHEMA}" CASCADE'
        ),
    ]
