"""The fact inbox remembers what it saw (settling, attempts in progress, unmatched files); inbox alert kinds."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0007_staging_schema"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("preload_failed", "preload failed or partial"),
                    ("batch_rejected", "fact batch rejected"),
                    ("facts_waiting", "facts wait for the preload"),
                    ("degraded", "facts loaded in degraded mode"),
                    ("share_high", "auto-derived share above threshold"),
                    ("stale_reviews", "reviews waiting too long"),
                    ("missed_schedule", "schedule did not run"),
                    ("inbox_rejected", "inbox file rejected"),
                    ("inbox_unmatched", "inbox file no domain matches"),
                    ("inbox_refused", "inbox cannot be processed safely"),
                ],
                max_length=20,
                verbose_name="kind",
            ),
        ),
        migrations.CreateModel(
            name="InboxFile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("inbox", models.TextField(verbose_name="inbox")),
                ("path", models.TextField(verbose_name="path in the inbox")),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("waiting", "settling"),
                            ("processing", "being processed"),
                            ("unmatched", "no domain matches"),
                            ("stuck", "processed, could not be moved"),
                        ],
                        default="waiting",
                        max_length=12,
                        verbose_name="state",
                    ),
                ),
                (
                    "signature",
                    models.CharField(blank=True, default="", max_length=200, verbose_name="size, times and inode"),
                ),
                ("size_bytes", models.BigIntegerField(default=0, verbose_name="size (bytes)")),
                (
                    "stable_since",
                    models.DateTimeField(default=django.utils.timezone.now, verbose_name="unchanged since"),
                ),
                ("first_seen", models.DateTimeField(default=django.utils.timezone.now, verbose_name="first seen")),
                ("started_at", models.DateTimeField(blank=True, null=True, verbose_name="processing started at")),
                ("outcome", models.CharField(blank=True, default="", max_length=10, verbose_name="outcome")),
                ("message", models.TextField(blank=True, default="", verbose_name="message")),
            ],
            options={
                "verbose_name": "inbox file",
                "verbose_name_plural": "inbox files",
                "ordering": ["inbox", "path"],
                "constraints": [models.UniqueConstraint(fields=("inbox", "path"), name="inboxfile_once")],
            },
        ),
    ]
