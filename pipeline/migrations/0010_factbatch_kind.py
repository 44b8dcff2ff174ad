"""Fact batches say whether they loaded facts or only derived references (a backfill run): only a fact load may make
a later load of the same file skip it."""

from django.db import migrations, models


def mark_reference_runs(apps, schema_editor):
    # A backfill run read rows and loaded none; a fact load loads every row it reads.
    FactBatch = apps.get_model("pipeline", "FactBatch")
    FactBatch.objects.filter(status="loaded", rows_read__gt=0, rows_loaded=0).update(kind="references")


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0009_trust_awaiting_source_and_abandoned_runs")]

    operations = [
        migrations.AddField(
            model_name="factbatch",
            name="kind",
            field=models.CharField(
                choices=[("facts", "facts"), ("references", "references only")],
                default="facts",
                help_text="references only: a backfill run, which derives reference rows and loads no facts",
                max_length=10,
                verbose_name="kind",
            ),
        ),
        migrations.RunPython(mark_reference_runs, migrations.RunPython.noop),
    ]
