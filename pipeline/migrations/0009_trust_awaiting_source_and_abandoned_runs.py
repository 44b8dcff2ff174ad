"""Preload trust: promoted rows confirmed by the source, rows awaiting the source, and abandoned runs and batches."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0008_inbox_files"),
    ]

    operations = [
        migrations.AddField(
            model_name="synctableresult",
            name="awaiting_samples",
            field=models.JSONField(blank=True, default=list, verbose_name="awaiting the source (first ones)"),
        ),
        migrations.AddField(
            model_name="synctableresult",
            name="awaiting_source",
            field=models.IntegerField(
                default=0,
                help_text="rows stewards promoted that the source does not have yet (what the feedback export carries)",
                verbose_name="awaiting the source",
            ),
        ),
        migrations.AddField(
            model_name="synctableresult",
            name="confirmed",
            field=models.IntegerField(
                default=0,
                help_text="rows stewards promoted that the source brought for the first time",
                verbose_name="promoted rows confirmed",
            ),
        ),
        migrations.AddField(
            model_name="syncupgrade",
            name="promoted",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="already authoritative (promoted by a steward) before the source brought it",
                verbose_name="promoted by a steward",
            ),
        ),
        migrations.AlterField(
            model_name="factbatch",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "running"),
                    ("loaded", "loaded"),
                    ("rejected", "rejected"),
                    ("failed", "failed"),
                    ("abandoned", "abandoned"),
                ],
                default="running",
                max_length=10,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="syncrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "running"),
                    ("success", "success"),
                    ("partial", "partial"),
                    ("failed", "failed"),
                    ("abandoned", "abandoned"),
                ],
                default="running",
                max_length=10,
                verbose_name="status",
            ),
        ),
    ]
