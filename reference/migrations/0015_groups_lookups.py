"""Both groups may view unmapped values (未映射值) and value mappings; stewards may map values and remove mappings."""

from django.db import migrations

from reference.permissions import ensure_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0014_groups_quarantine"),
        ("pipeline", "0016_lookup_fallbacks"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
