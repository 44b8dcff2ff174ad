"""未映射值: values a load's lookups could not map (机构名称 → 机构代码 fell back to G00, …). A steward maps a value
to a key once; later loads use the mapping and the rows already loaded are re-pointed (the services do the work)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Exists, Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from pipeline.facts.lookups import MappingRefused, map_value, unmap_value
from pipeline.models import UnmappedValue, ValueMapping
from stewardship.admin_typing import request_user


class MapValueForm(forms.Form):
    key = forms.CharField(
        label=gettext_lazy("key"),
        max_length=100,
        help_text=gettext_lazy("The existing key the selected values mean (e.g. 机构代码 G05)."),
    )


@admin.action(description=gettext_lazy("Map to a key…"), permissions=["change"])
def map_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[UnmappedValue]
) -> TemplateResponse | None:
    values = sorted(set(queryset.values_list("table", "match", "value")))
    form = MapValueForm(request.POST if "_apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        done = []
        try:
            for table, match, value in values:
                if ValueMapping.objects.filter(table=table, match=match, value=value).exists():
                    continue
                result = map_value(
                    table=table, match=match, value=value, key=form.cleaned_data["key"], user=request_user(request)
                )
                done.append(result)
        except MappingRefused as exc:
            form.add_error("key", str(exc))
        else:
            modeladmin.message_user(
                request,
                _("%(values)d values mapped to %(key)s; %(facts)d fact rows and %(refs)d reference rows re-pointed.")
                % {
                    "values": len(done),
                    "key": form.cleaned_data["key"].strip(),
                    "facts": sum(sum(r.fact_rows.values()) for r in done),
                    "refs": sum(sum(r.reference_rows.values()) for r in done),
                },
                messages.SUCCESS,
            )
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Map unmapped values to a key"),
        "opts": modeladmin.model._meta,
        "form": form,
        "values": values,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/pipeline/map_values.html", context)


class MappedFilter(admin.SimpleListFilter):
    title = gettext_lazy("mapped")
    parameter_name = "mapped"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("no", _("still unmapped")), ("yes", _("mapped"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UnmappedValue]) -> QuerySet[UnmappedValue]:
        if self.value() not in {"yes", "no"}:
            return queryset
        mapped = Exists(
            ValueMapping.objects.filter(table=OuterRef("table"), match=OuterRef("match"), value=OuterRef("value"))
        )
        return queryset.filter(mapped) if self.value() == "yes" else queryset.filter(~mapped)


@admin.register(UnmappedValue)
class UnmappedValueAdmin(admin.ModelAdmin):
    list_display = ("value", "source_column", "column", "fallback_shown", "rows", "mapped_to", "batch_link", "domain")
    list_filter = (MappedFilter, "column", "domain")
    search_fields = ("value",)
    list_select_related = ("batch",)
    actions = (map_selected,)
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: UnmappedValue | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description=gettext_lazy("fallback"), ordering="fallback")
    def fallback_shown(self, obj: UnmappedValue) -> str:
        return obj.fallback or "NULL"

    def get_queryset(self, request: HttpRequest) -> QuerySet[UnmappedValue]:
        mapping = ValueMapping.objects.filter(table=OuterRef("table"), match=OuterRef("match"), value=OuterRef("value"))
        return super().get_queryset(request).annotate(mapped_key=Subquery(mapping.values("key")[:1]))

    @admin.display(description=gettext_lazy("mapped to"))
    def mapped_to(self, obj: UnmappedValue) -> str:
        return getattr(obj, "mapped_key", None) or "—"

    @admin.display(description=gettext_lazy("batch"), ordering="batch")
    def batch_link(self, obj: UnmappedValue) -> SafeString:
        return format_html(
            '<a href="{}">#{}</a>', reverse("admin:pipeline_factbatch_change", args=[obj.batch_id]), obj.batch_id
        )


@admin.action(description=gettext_lazy("Remove the mapping (its rows get the fallback back)"), permissions=["change"])
def unmap_selected(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[ValueMapping]) -> None:
    changed = 0
    for pk in queryset.values_list("pk", flat=True):
        changed += unmap_value(mapping_id=pk, user=request_user(request))
    modeladmin.message_user(request, _("Mappings removed; %d rows got the fallback back.") % changed, messages.SUCCESS)


@admin.register(ValueMapping)
class ValueMappingAdmin(admin.ModelAdmin):
    list_display = ("table", "match", "value", "key", "repointed", "created_by", "created_at")
    list_filter = ("table",)
    search_fields = ("value", "key")
    actions = (unmap_selected,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: ValueMapping | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]
