"""The steward's tools in the admin: promote, bulk completion, merge, delete protection, provenance panel.

Thin callers of the ``stewardship`` services; every changing view requires the model's change permission (viewers get
403 or do not see the action at all)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import quote

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from pipeline.selectors import (
    best_suggested_keys,
    fact_rows_of_keys,
    facts_by_month,
    provenance,
    suggestions_for,
    usage_of_keys,
    with_suggestion,
)
from reference.models import MANUAL_ENTRY, Source, TrackedReference
from reference.registry import for_model, model_field, value_field
from stewardship.admin_typing import ReferenceModelAdmin, ReferenceModelForm, request_user
from stewardship.complete import complete, complete_preview
from stewardship.confirm import REASON_MAX_LENGTH, ReasonRequired, confirm_keep
from stewardship.feedback import write_feedback
from stewardship.merge import MergeRefused, merge, merge_impact
from stewardship.promote import PromoteResult, promote
from stewardship.reject import RejectRefused, reject_to_quarantine
from stewardship.required import is_blank, missing_of, missing_q, required_fields

PROVENANCE_SHOWN = 20
USAGE_MONTHS_SHOWN = 24
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _report_promote(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, result: PromoteResult) -> None:
    if result.promoted:
        modeladmin.message_user(request, _("%d rows promoted to authoritative.") % result.promoted, messages.SUCCESS)
    if result.refused:
        fields = "、".join(f"{name} ×{n}" for name, n in result.refused_by_field.items() if n)
        keys = ", ".join(result.refused_keys)
        modeladmin.message_user(
            request,
            _("%(n)d rows not promoted: required fields missing (%(fields)s), e.g. %(keys)s")
            % {"n": result.refused, "fields": fields, "keys": keys},
            messages.WARNING,
        )
    if not result.promoted and not result.refused:
        modeladmin.message_user(request, _("Nothing to promote: the selected rows are authoritative and reviewed."))


@admin.action(description=gettext_lazy("Promote selected rows to authoritative"), permissions=["change"])
def promote_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[TrackedReference]
) -> None:
    _report_promote(modeladmin, request, promote(queryset=queryset, user=request_user(request)))


@admin.action(description=gettext_lazy("Export promoted rows for the source system (xlsx)"), permissions=["view"])
def export_feedback(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[TrackedReference]
) -> HttpResponse | None:
    table = for_model(queryset.model).name
    stream = io.BytesIO()
    count = write_feedback(table=table, queryset=queryset, stream=stream)
    if not count:
        modeladmin.message_user(
            request,
            _("None of the selected rows was promoted by a steward and is still missing at the source."),
            messages.WARNING,
        )
        return None
    response = HttpResponse(stream.getvalue(), content_type=XLSX_TYPE)
    name = f"feedback_{table}_{timezone.localtime():%Y%m%d_%H%M}.xlsx"
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return response


class CompletionForm(forms.Form):
    """Every business field optional; only filled ones are applied."""

    MODES = (("empty", gettext_lazy("only where empty")), ("overwrite", gettext_lazy("overwrite")))
    mode = forms.ChoiceField(label=gettext_lazy("apply"), choices=MODES, initial="empty", widget=forms.RadioSelect)

    def __init__(self, *args: Any, model: type[TrackedReference], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model = model
        key = model._meta.pk.name
        self.value_fields: list[str] = []
        for field in model._meta.concrete_fields:
            if field.name == key or field.column.startswith("_"):
                continue
            formfield = field.formfield(required=False)
            if field.is_relation:
                formfield = forms.CharField(
                    label=field.verbose_name, required=False, max_length=value_field(field).max_length
                )
            if formfield is None:  # a field no form can edit
                continue
            self.fields[field.name] = formfield
            self.value_fields.append(field.name)
        self.fields["clear"] = forms.MultipleChoiceField(
            label=gettext_lazy("set to empty"),
            required=False,
            widget=forms.CheckboxSelectMultiple,
            choices=[(name, model_field(model, name).verbose_name) for name in self.value_fields],
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        for name in self.value_fields:
            related = model_field(self.model, name).related_model
            if (
                isinstance(related, type)
                and data.get(name)
                and not related._default_manager.filter(pk=data[name]).exists()
            ):
                self.add_error(
                    name, _("no %(model)s with key %(key)s") % {"model": related._meta.verbose_name, "key": data[name]}
                )
        values = self.values()
        both = set(values) & set(data.get("clear") or [])
        if both:
            raise forms.ValidationError(_("A field cannot be both set and emptied: %s") % ", ".join(sorted(both)))
        if not values and not data.get("clear"):
            raise forms.ValidationError(_("Fill in at least one field or choose one to empty."))
        return data

    def values(self) -> dict[str, Any]:
        data = getattr(self, "cleaned_data", {})
        return {name: data[name] for name in self.value_fields if data.get(name) not in (None, "")}


@admin.action(description=gettext_lazy("Complete fields of selected rows…"), permissions=["change"])
def complete_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[TrackedReference]
) -> TemplateResponse | None:
    form = CompletionForm(
        request.POST if "_preview" in request.POST or "_apply" in request.POST else None, model=queryset.model
    )
    preview = None
    if form.is_bound and form.is_valid():
        values, clear = form.values(), form.cleaned_data["clear"]
        overwrite = form.cleaned_data["mode"] == "overwrite"
        if "_apply" in request.POST:
            changed = complete(
                queryset=queryset, values=values, clear=clear, overwrite=overwrite, user=request_user(request)
            )
            modeladmin.message_user(request, _("%d rows completed.") % changed, messages.SUCCESS)
            return None
        preview = complete_preview(queryset=queryset, values=values, clear=clear, overwrite=overwrite)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Complete fields"),
        "opts": modeladmin.model._meta,
        "form": form,
        "preview": preview,
        "selected": queryset.count(),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/reference/complete_fields.html", context)


class ConfirmKeepForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("reason"),
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=gettext_lazy("Why these rows stay auto-derived (recorded in the history)."),
    )


@admin.action(description=gettext_lazy("Confirm and keep (still auto-derived)…"), permissions=["change"])
def confirm_keep_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[TrackedReference]
) -> TemplateResponse | None:
    form = ConfirmKeepForm(request.POST if "_apply" in request.POST else None)
    pending = queryset.filter(source=Source.AUTO_DERIVED, needs_review=True).count()
    if form.is_bound and form.is_valid():
        try:
            kept = confirm_keep(queryset=queryset, reason=form.cleaned_data["reason"], user=request_user(request))
        except ReasonRequired:
            form.add_error("reason", _("A reason is required."))
        else:
            modeladmin.message_user(
                request,
                _("%d rows confirmed and kept: no longer pending review, still auto-derived.") % kept,
                messages.SUCCESS,
            )
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Confirm and keep as auto-derived"),
        "opts": modeladmin.model._meta,
        "form": form,
        "selected": queryset.count(),
        "pending": pending,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/reference/confirm_keep.html", context)


EDIT_LABELS = {
    "extra": gettext_lazy("one character too many"),
    "swapped": gettext_lazy("two characters swapped"),
    "wrong_digit": gettext_lazy("one digit differs"),
    "missing_digit": gettext_lazy("one digit missing"),
    "unquoted": gettext_lazy("quotes or words around the key"),
}
FOUND_BY_LABELS = {
    "key": gettext_lazy("similar key"),
    "sibling": gettext_lazy("same parent"),
    "name": gettext_lazy("similar name"),
}


def evidence_labels(evidence: dict[str, Any]) -> list[str]:
    """A suggestion's evidence for people: which signals matched, with their measures."""
    labels = [str(FOUND_BY_LABELS.get(f, f)) for f in evidence.get("found_by", [])]
    key = evidence.get("key") or {}
    if key.get("edit"):
        labels.append(str(EDIT_LABELS.get(key["edit"], key["edit"])))
    if key.get("distance") is not None:
        labels.append(_("edit distance %d") % key["distance"])
    if key.get("same_parent") is False:
        labels.append(_("another parent"))
    for column, similarity in (evidence.get("names") or {}).items():
        labels.append(_("%(column)s similarity %(score).2f") % {"column": column, "score": similarity})
    return labels


def typo_label(key: str | None, score: float | None) -> SafeString | str:
    """「疑似 S00385 的笔误」 with the score, for the review queue."""
    if not key:
        return "—"
    return format_html(
        '<span class="refgov-suggestion" title="{}">{}</span>',
        _("score %.2f") % (score or 0),
        _("probably a typo of %(key)s (%(score).2f)") % {"key": key, "score": score or 0},
    )


class RequiredFieldsFormMixin(ReferenceModelForm):
    """For the admin's add and change forms: a row added by hand is authoritative and reviewed at once, so it must
    have the required fields a promote asks for; an authoritative row cannot have one of them emptied."""

    required_for_authority: list[models.Field[Any, Any]] = []

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        instance = self.instance
        adding = instance._state.adding
        if not adding and (instance.source != Source.AUTHORITATIVE or instance.needs_review):
            return data
        missing = [
            field
            for field in self.required_for_authority
            if field.name in self.fields
            and is_blank(data.get(field.name))
            and (adding or not is_blank(getattr(instance, field.attname)))
        ]
        if not missing:
            return data
        names = "、".join(str(f.verbose_name) for f in missing)
        for field in missing:
            self.add_error(field.name, _("Required for an authoritative row."))
        if adding:
            raise forms.ValidationError(
                _("A row added here is authoritative at once: an authoritative row must have %(fields)s filled in.")
                % {"fields": names}
            )
        raise forms.ValidationError(
            _("An authoritative row must keep %(fields)s filled in: they cannot be emptied.") % {"fields": names}
        )


class MergeForm(forms.Form):
    right_key = forms.CharField(label=gettext_lazy("merge into key"), max_length=100)


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("reason"),
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Why this key means nothing (kept with the quarantined rows and in the history)."),
    )


class StewardshipAdminMixin(ReferenceModelAdmin):
    """Per-row promote and merge views, the provenance panel and the delete protection of a TrackedReferenceAdmin."""

    change_form_template = "admin/reference/change_form.html"

    def get_form(
        self, request: HttpRequest, obj: TrackedReference | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[TrackedReference]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        fields = required_fields(for_model(self.model).name)
        if not fields:
            return form
        return cast(
            "type[forms.ModelForm[TrackedReference]]",
            type(form.__name__, (RequiredFieldsFormMixin, form), {"required_for_authority": fields}),
        )

    def save_model(self, request: HttpRequest, obj: TrackedReference, form: Any, change: Any) -> None:
        if not change and not obj.derived_from_domain:
            obj.derived_from_domain = MANUAL_ENTRY  # not from the source: it awaits the source like a promoted row
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        return [
            path("<path:object_id>/promote/", self.admin_site.admin_view(self.promote_view), name=f"{name}_promote"),
            path("<path:object_id>/merge/", self.admin_site.admin_view(self.merge_view), name=f"{name}_merge"),
            path("<path:object_id>/reject/", self.admin_site.admin_view(self.reject_view), name=f"{name}_reject"),
            *super().get_urls(),
        ]

    def _changeable(self, request: HttpRequest, object_id: str) -> TrackedReference:
        """The row of an admin URL's (quoted) object id, if the user may change it."""
        obj = get_object_or_404(self.model, pk=unquote(object_id))
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _url(self, view: str, obj: TrackedReference) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[admin_quote(obj.pk)])

    def _change_url(self, obj: TrackedReference) -> str:
        return self._url("change", obj)

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._changeable(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(self._change_url(obj))
        _report_promote(
            self, request, promote(queryset=self.model.objects.filter(pk=obj.pk), user=request_user(request))
        )
        return HttpResponseRedirect(self._change_url(obj))

    def merge_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._changeable(request, object_id)
        table = for_model(self.model).name
        impact = merge_impact(table=table, wrong_key=obj.pk)
        form = MergeForm(request.POST or (request.GET if "right_key" in request.GET else None))
        target = None
        if form.is_valid():
            target = self.model.objects.filter(pk=form.cleaned_data["right_key"].strip()).first()
            if target is None:
                form.add_error("right_key", _("No row with this key."))
            elif "_confirm" in request.POST:
                try:
                    merge(table=table, wrong_key=obj.pk, right_key=target.pk, user=request_user(request))
                except MergeRefused as exc:
                    form.add_error(None, str(exc))
                else:
                    self.message_user(
                        request,
                        _(
                            "%(wrong)s merged into %(right)s: %(n)d fact rows re-pointed; "
                            "later loads resolve %(wrong)s to %(right)s."
                        )
                        % {"wrong": obj.pk, "right": target.pk, "n": impact.total_fact_rows},
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(self._change_url(target))
        return self._row_page(
            request,
            obj,
            "admin/reference/merge.html",
            title=_("Merge %s into another key") % obj.pk,
            form=form,
            impact=impact,
            target=target if form.is_valid() and not form.errors else None,
        )

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Reject an auto-derived key facts use: its fact rows go to the quarantine, the row is deleted."""
        obj = self._changeable(request, object_id)
        table = for_model(self.model).name
        impact = merge_impact(table=table, wrong_key=obj.pk)
        form = RejectForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = reject_to_quarantine(
                    table=table, key=obj.pk, reason=form.cleaned_data["reason"], user=request_user(request)
                )
            except RejectRefused as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    _("%(key)s rejected: %(n)d fact rows moved to the quarantine, where they wait for a corrected key.")
                    % {"key": obj.pk, "n": result.rows},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:pipeline_quarantinedrow_changelist") + f"?q={quote(str(obj.pk))}"
                )
        return self._row_page(
            request, obj, "admin/reference/reject.html", title=_("Reject %s") % obj.pk, form=form, impact=impact
        )

    def _row_page(self, request: HttpRequest, obj: TrackedReference, template: str, **context: Any) -> HttpResponse:
        """A page about one row (merge, reject) in the admin's frame."""
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, "original": obj, **context},
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if obj is not None:
            extra.update(self.stewardship_context(request, obj))
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def stewardship_context(self, request: HttpRequest, obj: TrackedReference) -> dict[str, Any]:
        table = for_model(self.model).name
        can_change = self.has_change_permission(request, obj)
        return {
            "provenance": provenance(table=table, key=obj.pk, limit=PROVENANCE_SHOWN),
            "fact_usage": facts_by_month(model=self.model, key=obj.pk, months=USAGE_MONTHS_SHOWN),
            "missing_required": [f.verbose_name for f in missing_of(obj, required_fields(table))],
            "can_promote": can_change and (obj.needs_review or obj.source != Source.AUTHORITATIVE),
            "can_merge": can_change and obj.source == Source.AUTO_DERIVED,
            "suggestions": self.suggestion_columns(obj, can_merge=can_change)
            if obj.source == Source.AUTO_DERIVED
            else None,
        }

    #: the fields shown side by side for a row and its suggested keys (``a__b``: field b of the row a points to)
    comparison_fields: tuple[str, ...] = ()

    def suggestion_columns(self, obj: TrackedReference, *, can_merge: bool) -> dict[str, Any] | None:
        """The row and the rows its key probably means, side by side: one column each, one line per field."""
        table = for_model(self.model).name
        found = suggestions_for(table=table, key=obj.pk)
        if not found:
            return None
        candidates = {str(c.pk): c for c in self.model.objects.filter(pk__in=[s.candidate for s in found])}
        usage = usage_of_keys(model=self.model, keys=[obj.pk, *candidates])
        columns = [(obj, None)] + [(candidates[s.candidate], s) for s in found if s.candidate in candidates]
        lines = [
            (_comparison_label(self.model, name), [_comparison_value(row, name) for row, _s in columns])
            for name in self.comparison_fields
        ]
        return {
            "columns": [
                {
                    "row": row,
                    "suggestion": suggestion,
                    "usage": usage.get(str(row.pk)),
                    "evidence": evidence_labels(suggestion.evidence) if suggestion else [],
                    "change_url": self._change_url(row),
                    "merge_url": f"{self._url('merge', obj)}?right_key={quote(str(row.pk))}"
                    if suggestion and can_merge
                    else None,
                }
                for row, suggestion in columns
            ],
            "lines": lines,
        }

    def _merge_instead_url(self, obj: TrackedReference, best: dict[str, str]) -> str:
        """The merge view for a row facts use, with its best typo suggestion filled in when there is one."""
        url = self._url("merge", obj)
        return f"{url}?right_key={quote(best[obj.pk])}" if obj.pk in best else url

    def get_deleted_objects(
        self, objs: Sequence[TrackedReference] | QuerySet[TrackedReference], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """Rows facts still use cannot be deleted: say why and offer the merge instead of listing every fact."""
        objs = list(objs)
        used = fact_rows_of_keys(model=self.model, keys=[obj.pk for obj in objs])
        best = best_suggested_keys(table=for_model(self.model).name, keys=list(used)) if used else {}
        protected: list[str] = [
            format_html(
                '{} <a href="{}" class="refgov-merge-instead">{}</a> · '
                '<a href="{}" class="refgov-reject-instead">{}</a>',
                _(
                    "%(key)s: %(n)d fact rows use it — merge it into the right key, or reject it and keep its "
                    "fact rows in the quarantine."
                )
                % {"key": obj.pk, "n": used[obj.pk]},
                self._merge_instead_url(obj, best),
                _("Merge %s into another key") % obj.pk,
                self._url("reject", obj),
                _("Reject %s (fact rows to the quarantine)") % obj.pk,
            )
            for obj in objs
            if used.get(obj.pk)
        ]
        if protected:
            return [], {}, set(), protected
        return super().get_deleted_objects(objs, request)


class RequiredMissingFilter(admin.SimpleListFilter):
    title = gettext_lazy("required fields")
    parameter_name = "required"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("missing", _("missing")), ("complete", _("complete"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TrackedReference]) -> QuerySet[TrackedReference]:
        fields = required_fields(for_model(queryset.model).name)
        if not fields or self.value() not in {"missing", "complete"}:
            return queryset
        missing = missing_q(fields)
        return queryset.filter(missing) if self.value() == "missing" else queryset.exclude(missing)


class SuggestionFilter(admin.SimpleListFilter):
    """Auto-derived rows with a typo suggestion (any, or likely: score at least ``LIKELY``), or without one."""

    LIKELY = 0.8
    title = gettext_lazy("typo suggestion")
    parameter_name = "suggestion"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [
            ("likely", _("likely (score ≥ %.1f)") % self.LIKELY),
            ("any", _("any")),
            ("none", _("none")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TrackedReference]) -> QuerySet[TrackedReference]:
        table = for_model(queryset.model).name
        auto = queryset.filter(source=Source.AUTO_DERIVED)
        if self.value() == "likely":
            return auto.filter(with_suggestion(table=table, min_score=self.LIKELY))
        if self.value() == "any":
            return auto.filter(with_suggestion(table=table))
        if self.value() == "none":
            return queryset.exclude(with_suggestion(table=table))
        return queryset


class DomainFilter(admin.SimpleListFilter):
    """The configured domains (no DISTINCT over a million rows to find them)."""

    title = gettext_lazy("derived from domain")
    parameter_name = "derived_from_domain"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        from pipeline.config import domain_names

        return [(name, name) for name in domain_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TrackedReference]) -> QuerySet[TrackedReference]:
        return queryset.filter(derived_from_domain=self.value()) if self.value() else queryset


class DerivedAtFilter(admin.DateFieldListFilter):
    """The preset ranges plus a from / to date form (``derived_at__gte`` / ``derived_at__lt``, local days)."""

    template = "admin/reference/date_range_filter.html"

    def __init__(
        self,
        field: models.Field[Any, Any],
        request: HttpRequest,
        params: dict[str, Any],
        model: type[models.Model],
        model_admin: admin.ModelAdmin[Any],
        field_path: str,
    ) -> None:
        since, until = f"{field_path}__gte", f"{field_path}__lt"
        for name in (since, until):
            values = params.get(name)
            if values and _is_day(values[-1]):
                day = dt.date.fromisoformat(values[-1])
                params[name] = [timezone.make_aware(dt.datetime.combine(day, dt.time())).isoformat()]
        super().__init__(field, request, params, model, model_admin, field_path)
        self.since_day = _day_of(self.used_parameters.get(since))
        self.until_day = _day_of(self.used_parameters.get(until))
        self.since_name, self.until_name = since, until
        self.kept_params = [(k, v) for k, v in request.GET.items() if k not in {since, until, "p"}]


def _is_day(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _day_of(value: Any) -> str:
    value = value[-1] if isinstance(value, list) else value
    if not value:
        return ""
    try:
        return timezone.localtime(dt.datetime.fromisoformat(str(value))).date().isoformat()
    except ValueError:
        return ""


def _comparison_label(model: type[models.Model], name: str) -> str:
    first, _sep, rest = name.partition("__")
    field = model_field(model, first)
    if rest and isinstance(field.related_model, type):
        return f"{field.verbose_name} · {_comparison_label(field.related_model, rest)}"
    return str(field.verbose_name)


def _comparison_value(row: models.Model | None, name: str) -> Any:
    first, _sep, rest = name.partition("__")
    value = getattr(row, first, None) if row is not None else None
    if rest:
        return _comparison_value(value, rest)
    return value if value not in (None, "") else "—"
