"""Both groups may view alerts and the django-q2 task results and schedules (the run history links to them)."""

from django.db import migrations

from reference.permissions import ensure_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0003_groups"),
        ("pipeline", "0003_alerts"),
        ("django_q", "__latest__"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
