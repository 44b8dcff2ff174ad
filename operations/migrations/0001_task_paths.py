"""The q tasks moved from ``pipeline.tasks`` to ``operations.tasks``: point the stored schedules at the new paths."""

from django.db import migrations

OLD, NEW = "pipeline.tasks.", "operations.tasks."


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for schedule in Schedule.objects.filter(func__startswith=OLD):
        schedule.func = NEW + schedule.func.removeprefix(OLD)
        schedule.save(update_fields=["func"])


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for schedule in Schedule.objects.filter(func__startswith=NEW):
        schedule.func = OLD + schedule.func.removeprefix(NEW)
        schedule.save(update_fields=["func"])


class Migration(migrations.Migration):
    dependencies = [("django_q", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
