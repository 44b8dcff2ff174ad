"""A partial index on the rows stewards promoted: each preload looks for those that await the source."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reference", "0009_groups_inbox_files"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="annuityplan",
            index=models.Index(
                condition=models.Q(("derived_from_domain__isnull", False), ("source", "authoritative")),
                fields=["derived_from_domain"],
                name="annuityplan_promoted",
            ),
        ),
        migrations.AddIndex(
            model_name="organization",
            index=models.Index(
                condition=models.Q(("derived_from_domain__isnull", False), ("source", "authoritative")),
                fields=["derived_from_domain"],
                name="organization_promoted",
            ),
        ),
        migrations.AddIndex(
            model_name="portfolioplan",
            index=models.Index(
                condition=models.Q(("derived_from_domain__isnull", False), ("source", "authoritative")),
                fields=["derived_from_domain"],
                name="portfolioplan_promoted",
            ),
        ),
        migrations.AddIndex(
            model_name="productline",
            index=models.Index(
                condition=models.Q(("derived_from_domain__isnull", False), ("source", "authoritative")),
                fields=["derived_from_domain"],
                name="productline_promoted",
            ),
        ),
    ]
