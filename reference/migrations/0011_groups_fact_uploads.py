"""Both groups may view fact file uploads; stewards may upload (pipeline.add_factupload)."""

from django.db import migrations

from reference.permissions import ensure_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0010_promoted_rows_index"),
        ("pipeline", "0012_fact_uploads"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
