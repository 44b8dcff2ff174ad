"""Permission groups 数据管理员 (stewards) and 只读用户 (viewers); the logic lives in reference.permissions."""

from django.db import migrations

from reference.permissions import ensure_groups, remove_groups


def forwards(apps, schema_editor):
    ensure_groups(apps=apps, using=schema_editor.connection.alias)


def backwards(apps, schema_editor):
    remove_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0002_sql_functions"),
        ("pipeline", "0002_facts"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
