"""The change log of the reference tables: one trigger function, row triggers on the four tables of ``business``.

UPDATE and DELETE are always recorded. INSERT is recorded only inside a pghistory context (a steward's change):
the preload's and the fact load's plain inserts make the WHEN clause false, so no trigger runs for them."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models

TABLES = {"年金计划": "年金计划号", "组合计划": "组合代码", "产品线": "产品线代码", "组织架构": "机构代码"}

FUNCTION = """
CREATE FUNCTION public.refgov_history_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ctx text := NULLIF(current_setting('pghistory.context_id', true), '');
  old_row jsonb;
  new_row jsonb;
BEGIN
  IF ctx IS NOT NULL AND current_setting('refgov.history_attached', true) IS DISTINCT FROM
       ctx || current_setting('pghistory.context_metadata', true) THEN
    -- upsert the context row once per context and metadata, not once per changed row
    PERFORM _pgh_attach_context();
    PERFORM set_config('refgov.history_attached', ctx || current_setting('pghistory.context_metadata', true), true);
  END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  INSERT INTO public.reference_referenceevent (label, "table", key, before, after, context_id)
  VALUES (lower(TG_OP), TG_TABLE_NAME, COALESCE(new_row, old_row) ->> TG_ARGV[0], old_row, new_row, ctx::uuid);
  RETURN NULL;
END $$;
"""

IN_CONTEXT = "COALESCE(current_setting('pghistory.context_id', true), '') <> ''"


def triggers_sql() -> str:
    statements = []
    for table, key in TABLES.items():
        for op, when in (("INSERT", IN_CONTEXT), ("UPDATE", "OLD.* IS DISTINCT FROM NEW.*"), ("DELETE", None)):
            condition = f" WHEN ({when})" if when else ""
            statements.append(
                f'CREATE TRIGGER refgov_history_{op.lower()} AFTER {op} ON business."{table}" FOR EACH ROW'
                f"{condition} EXECUTE FUNCTION public.refgov_history_event('{key}');"
            )
    return "\n".join(statements)


def drop_triggers_sql() -> str:
    return "\n".join(
        f'DROP TRIGGER IF EXISTS refgov_history_{op} ON business."{table}";'
        for table in TABLES
        for op in ("insert", "update", "delete")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pghistory", "0007_auto_20250421_0444"),
        ("reference", "0006_usage"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReferenceEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "created_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), verbose_name="time"),
                ),
                (
                    "label",
                    models.CharField(
                        choices=[("insert", "insert"), ("update", "update"), ("delete", "delete")],
                        max_length=10,
                        verbose_name="change",
                    ),
                ),
                ("table", models.CharField(db_column="table", max_length=50, verbose_name="table")),
                ("key", models.CharField(max_length=50, verbose_name="key")),
                ("before", models.JSONField(null=True, verbose_name="before")),
                ("after", models.JSONField(null=True, verbose_name="after")),
                (
                    "context",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="pghistory.context",
                        verbose_name="context",
                    ),
                ),
            ],
            options={
                "verbose_name": "reference change",
                "verbose_name_plural": "reference changes",
                "indexes": [models.Index(fields=["table", "key", "id"], name="referenceevent_row")],
            },
        ),
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS public.refgov_history_event()"),
        migrations.RunSQL(triggers_sql(), drop_triggers_sql()),
    ]
