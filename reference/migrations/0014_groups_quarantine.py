"""Both groups may view quarantined rows (隔离行); stewards may correct and resubmit them."""

from django.db import migrations

from reference.permissions import ensure_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0013_usage_weight_indexes"),
        ("pipeline", "0015_quarantined_rows"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
