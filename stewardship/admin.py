"""Admin for the four reference tables: one shared base class, per-model configuration only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ORDER_VAR
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, XLSX

from pipeline.selectors import best_suggestion
from reference.history import Action, stewardship_context
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, Source, TrackedReference
from reference.registry import TRACKING_FIELDS, for_model
from refgov.html import NEUTRAL, badge
from stewardship.admin_typing import request_user
from stewardship.history_admin import HistoryAdminMixin
from stewardship.lookups_admin import UnmappedValueAdmin, ValueMappingAdmin
from stewardship.quarantine_admin import QuarantinedRowAdmin
from stewardship.queue import WEIGHT_ORDERING, WeightOrderedPaginator
from stewardship.required import missing_of, required_fields
from stewardship.resources import ReferenceResource, resource_for
from stewardship.workbench import (
    DerivedAtFilter,
    DomainFilter,
    RequiredMissingFilter,
    StewardshipAdminMixin,
    SuggestionFilter,
    complete_selected,
    confirm_keep_selected,
    export_feedback,
    promote_selected,
    typo_label,
)

__all__ = ["QuarantinedRowAdmin", "TrackedReferenceAdmin", "UnmappedValueAdmin", "ValueMappingAdmin"]

admin.site.site_header = _("refgov reference data stewardship")
admin.site.site_title = _("refgov admin")
admin.site.index_title = _("Data stewardship")

SOURCE_COLORS = {
    Source.AUTHORITATIVE.value: "#2e7d32",  # green
    Source.AUTO_DERIVED.value: "#ef6c00",  # orange
}


class TrackedReferenceAdmin(HistoryAdminMixin, StewardshipAdminMixin, ImportExportMixin, admin.ModelAdmin):
    """Base admin for a TrackedReference model.

    Subclasses set ``key_field`` and ``name_fields`` (and optionally ``extra_list_fields`` /
    ``extra_search_fields``); ``list_display`` (the key, the first two name fields, the extra ones, then the
    stewardship columns) and ``search_fields`` (all of them) are derived from them unless the subclass declares its own.
    """

    key_field: str = ""
    name_fields: tuple[str, ...] = ()
    extra_list_fields: tuple[str, ...] = ()
    extra_search_fields: tuple[str, ...] = ()

    list_filter = (
        "source",
        "needs_review",
        RequiredMissingFilter,
        SuggestionFilter,
        DomainFilter,
        ("derived_at", DerivedAtFilter),
    )
    readonly_fields = TRACKING_FIELDS
    show_full_result_count = False
    list_per_page = 100
    actions = (promote_selected, complete_selected, confirm_keep_selected, export_feedback)
    formats = (XLSX, CSV)

    def get_resource_classes(self, request: HttpRequest) -> list[type[ReferenceResource]]:
        return [resource_for(self.model)]

    def process_dataset(self, dataset: Any, form: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """An import (and its dry run, rolled back) is one stewardship change of the importing user."""
        with stewardship_context(user=request_user(request), action=Action.IMPORT, table=for_model(self.model).name):
            return super().process_dataset(dataset, form, request, **kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.key_field:
            return
        if "list_display" not in cls.__dict__:
            # Review state is in the source badge, the filter and the completeness column: no column of its own.
            cls.list_display = (
                cls.key_field,
                *cls.name_fields[:2],
                *cls.extra_list_fields,
                "source_badge",
                "typo_suggestion",
                "weight",
                "completeness",
                "age",
                "derived_from_domain",
            )
        if "search_fields" not in cls.__dict__:
            cls.search_fields = (cls.key_field, *cls.name_fields, *cls.extra_search_fields)

    @admin.display(description=_("source"), ordering="source")
    def source_badge(self, obj: TrackedReference) -> SafeString:
        return badge(SOURCE_COLORS.get(obj.source, NEUTRAL), obj.get_source_display())

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrackedReference]:
        # Django skips list_select_related when the queryset already selects related rows: name both here.
        related = self.list_select_related if isinstance(self.list_select_related, (list, tuple)) else ()
        lookups: list[str] = ["usage", *related]  # each table's usage row (reference.models._usage_of)
        queryset = super().get_queryset(request).select_related(*lookups)
        return queryset.annotate(**best_suggestion(table=for_model(self.model).name))

    @admin.display(description=_("typo suggestion"), ordering="suggestion_score")
    def typo_suggestion(self, obj: TrackedReference) -> SafeString | str:
        if obj.source != Source.AUTO_DERIVED:
            return "—"
        return typo_label(getattr(obj, "suggested_key", None), getattr(obj, "suggestion_score", None))

    def get_ordering(self, request: HttpRequest) -> list[Any] | tuple[Any, ...]:  # names or order expressions
        """The review queue (pending rows) by business weight, then age; everything else by key."""
        if request.GET.get("needs_review__exact") == "1":
            return list(WEIGHT_ORDERING)
        return super().get_ordering(request)

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[TrackedReference],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        """The review queue in its own order (no column chosen) is paged through the weight index."""
        if request.GET.get("needs_review__exact") == "1" and not request.GET.get(ORDER_VAR):
            return WeightOrderedPaginator(queryset, per_page, orphans, allow_empty_first_page)
        return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)

    @admin.display(description=_("completeness"))
    def completeness(self, obj: TrackedReference) -> SafeString:
        missing = missing_of(obj, required_fields(for_model(self.model).name))
        if not missing:
            return mark_safe('<span style="color:#2e7d32">✔</span>')
        return format_html(
            '<span style="color:#c62828" class="refgov-missing" title="{}">{}</span>',
            "、".join(str(f.verbose_name) for f in missing),
            _("%(n)d required missing") % {"n": len(missing)},
        )

    @admin.display(description=_("fact rows / closing assets"), ordering="usage__closing_assets")
    def weight(self, obj: TrackedReference) -> str:
        usage = getattr(obj, "usage", None)
        if usage is None or not usage.fact_rows:
            return "—"
        return f"{usage.fact_rows:,} / {usage.closing_assets:,.0f}"

    @admin.display(description=_("age (days)"), ordering="derived_at")
    def age(self, obj: TrackedReference) -> int | str:
        if obj.derived_at is None:
            return "—"
        return (timezone.now() - obj.derived_at).days

    def get_fieldsets(self, request: HttpRequest, obj: TrackedReference | None = None) -> Any:
        if self.fieldsets:
            return self.fieldsets
        fields = [f for f in self.get_fields(request, obj) if f not in TRACKING_FIELDS]
        return [
            (None, {"fields": fields}),
            (_("Tracking"), {"fields": list(TRACKING_FIELDS)}),
        ]

    def has_delete_permission(self, request: HttpRequest, obj: TrackedReference | None = None) -> bool:
        if not super().has_delete_permission(request, obj):
            return False
        if obj is not None and obj.source == Source.AUTHORITATIVE and not request.user.is_superuser:
            return False
        return True


@admin.register(AnnuityPlan)
class AnnuityPlanAdmin(TrackedReferenceAdmin):
    key_field = "plan_code"
    name_fields = ("short_name", "customer_name", "full_name")
    comparison_fields = ("short_name", "full_name", "customer_name", "plan_type", "lead_branch", "company_id")
    extra_list_fields = ("plan_type", "status")


@admin.register(PortfolioPlan)
class PortfolioPlanAdmin(TrackedReferenceAdmin):
    key_field = "portfolio_code"
    name_fields = ("name", "short_name")
    comparison_fields = ("name", "plan", "portfolio_type", "plan__customer_name", "plan__lead_branch")
    extra_list_fields = ("plan", "portfolio_type")
    extra_search_fields = ("plan__plan_code",)
    list_select_related = ("plan",)
    raw_id_fields = ("plan",)


@admin.register(ProductLine)
class ProductLineAdmin(TrackedReferenceAdmin):
    key_field = "code"
    name_fields = ("name", "category", "business_group")
    comparison_fields = ("name", "category", "business_group")


@admin.register(Organization)
class OrganizationAdmin(TrackedReferenceAdmin):
    key_field = "code"
    name_fields = ("name", "annuity_center", "region")
    comparison_fields = ("name", "annuity_center", "region")
