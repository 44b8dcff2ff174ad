"""The spreadsheet round trip of a review queue (django-import-export): export with Chinese column names and values
suggested from the facts where a field is empty; import only updates existing rows, previewed before it is applied.

Exported text that a spreadsheet could run as a formula carries a leading ``'`` (``refgov.formulae``); an import
strips it again, so a value goes out and comes back unchanged."""

from __future__ import annotations

from functools import cache
from typing import Any, NoReturn

from django.db import connection, models
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets
from psycopg import sql

from pipeline.selectors import fact_relations
from reference.models import TrackedReference
from reference.registry import TRACKING_COLUMNS, ReferenceTable, for_model, get_table, model_field, value_field
from refgov.db.sql import ident
from refgov.formulae import escape_formula, unescape_formula
from stewardship.required import blank_q

#: table → model field → fact column whose most frequent value is the suggestion for an empty field
SUGGESTIONS: dict[str, dict[str, str]] = {
    "年金计划": {
        "short_name": "计划名称",
        "full_name": "计划名称",
        "customer_name": "客户名称",
        "plan_type": "计划类型",
    },
    "组合计划": {"name": "组合名称", "portfolio_type": "组合类型"},
    "组织架构": {"name": "机构名称"},
}

#: a fact table's values of one column for the keys of a queryset (``empty``: the queryset's SQL)
_SUGGESTED_VALUES = sql.SQL(
    "SELECT {key} AS k, {value} AS v FROM {fact} WHERE {key} IN ({empty}) AND {value} IS NOT NULL"
)


class ReferenceResource(resources.ModelResource):
    table: ReferenceTable

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suggested: dict[str, dict[str, str]] = {}

    def init_instance(self, row: dict[str, Any] | None = None) -> NoReturn:
        key = self.table.key_column
        raise ValueError(
            _("no row with %(column)s %(key)s: an import only completes existing rows")
            % {"column": key, "key": (row or {}).get(key)}
        )

    def before_export(self, queryset: QuerySet[TrackedReference], **kwargs: Any) -> None:
        self.suggested = suggestions(self.table, queryset)

    def export_field(self, field: fields.Field, instance: TrackedReference, **kwargs: Any) -> Any:
        value = super().export_field(field, instance, **kwargs)
        if value in (None, "") and field.attribute in self.suggested:
            value = self.suggested[field.attribute].get(str(instance.pk), value)
        return escape_formula(value)

    def before_import_row(self, row: dict[str, Any], **kwargs: Any) -> None:
        for column, value in row.items():
            row[column] = unescape_formula(value)
        super().before_import_row(row, **kwargs)


def suggestions(table: ReferenceTable, queryset: QuerySet[TrackedReference]) -> dict[str, dict[str, str]]:
    """Model field → key → the most frequent value of the mapped fact column, for rows where the field is empty."""
    found: dict[str, dict[str, str]] = {}
    for name, fact_column in SUGGESTIONS.get(table.name, {}).items():
        field = model_field(table.model, name)
        empty_sql, params = queryset.filter(blank_q(field)).values("pk").query.sql_with_params()
        parts = [
            _SUGGESTED_VALUES.format(
                key=ident(model_field(fact, attr).column),
                value=ident(fact_column),
                fact=ident(fact._meta.db_table),
                empty=sql.SQL(empty_sql),  # Django's SQL for the queryset, with its own parameters
            )
            for fact, attr in fact_relations(table.model)
            if fact_column in {f.column for f in fact._meta.concrete_fields}
        ]
        if not parts:
            continue
        with connection.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT k, mode() WITHIN GROUP (ORDER BY v) FROM ({}) u GROUP BY k").format(
                    sql.SQL(" UNION ALL ").join(parts)
                ),
                list(params) * len(parts),
            )
            found[name] = dict(cur.fetchall())
    return found


def _field(field: models.Field[Any, Any], column: str, *, readonly: bool) -> fields.Field:
    """The field import-export would make for ``field`` (its widget for the type), headed by the database column."""
    made = resources.ModelResource.field_from_django_field(field.name, field, readonly)
    made.column_name = column
    if isinstance(field, (models.CharField, models.TextField)):
        made.widget = widgets.CharWidget(allow_blank=False)  # an empty cell is "no value", as in the database
    return made


@cache
def resource_for(model: type[models.Model]) -> type[ReferenceResource]:
    """A resource whose columns are the table's database columns (Chinese), key first, tracking columns read-only."""
    table = for_model(model)
    declared = {}
    for column, field in table.data_fields.items():
        if field.is_relation:
            widget = widgets.ForeignKeyWidget(field.related_model, value_field(field).name)
            declared[field.name] = fields.Field(attribute=field.name, column_name=column, widget=widget)
        else:
            declared[field.name] = _field(field, column, readonly=False)
    for column in TRACKING_COLUMNS:
        field = next(f for f in model._meta.concrete_fields if f.column == column)
        declared[field.name] = _field(field, column, readonly=True)
    meta = type(
        "Meta",
        (),
        {
            "model": model,
            "fields": tuple(declared),
            "import_id_fields": (model._meta.pk.name,),
            "skip_unchanged": True,
            "report_skipped": True,
            "use_transactions": True,
            "clean_model_instances": True,
        },
    )
    return type(
        f"{model.__name__}Resource", (ReferenceResource,), {"Meta": meta, "table": get_table(table.name), **declared}
    )
