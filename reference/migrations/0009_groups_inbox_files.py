"""Both groups may view what the fact inbox saw (pipeline.InboxFile)."""

from django.db import migrations

from reference.permissions import ensure_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0008_merge_records"),
        ("pipeline", "0008_inbox_files"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
