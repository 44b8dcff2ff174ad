"""隔离行: the rows a load kept out because a new key broke the key rules. Stewards correct the key (optionally
remembered as an alias) and resubmit the rows into their month; the services do the work."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from pipeline.facts.quarantine import (
    QuarantineError,
    correct_by_suggestions,
    correct_quarantined,
    resubmit_quarantined,
)
from pipeline.models import FactBatch, KeyProblem, QuarantinedRow, QuarantineState
from pipeline.selectors import best_quarantine_suggestion
from refgov.html import badge
from stewardship.admin_typing import request_user
from stewardship.workbench import typo_label

STATE_COLORS = {QuarantineState.PENDING.value: "#c62828", QuarantineState.RESUBMITTED.value: "#2e7d32"}


def _batch_link(batch: FactBatch | None) -> SafeString | str:
    if batch is None:
        return "—"
    return format_html('<a href="{}">#{}</a>', reverse("admin:pipeline_factbatch_change", args=[batch.pk]), batch.pk)


class CorrectKeyForm(forms.Form):
    wrong = forms.ChoiceField(label=gettext_lazy("wrong key"))
    right_key = forms.CharField(
        label=gettext_lazy("right key"),
        max_length=100,
        help_text=gettext_lazy(
            "An existing key of the same table, or a new one that passes the key rules (derived when resubmitted)."
        ),
    )
    remember_alias = forms.BooleanField(
        label=gettext_lazy("remember as an alias"),
        required=False,
        initial=True,
        help_text=gettext_lazy("Later loads resolve the wrong key to the right key directly."),
    )

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wrong = self.fields["wrong"]
        assert isinstance(wrong, forms.ChoiceField)
        wrong.choices = choices


def _wrong_keys(queryset: QuerySet[QuarantinedRow]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], int] = {}
    for problems in queryset.filter(state=QuarantineState.PENDING).values_list("problems", flat=True):
        for p in problems:
            found[(p["table"], p["key"])] = found.get((p["table"], p["key"]), 0) + 1
    return [(f"{t}\t{k}", f"{t}: {k!r} ({n})") for (t, k), n in sorted(found.items())]


def _report(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, ids: list[int]) -> None:
    result = resubmit_quarantined(ids=ids, user=request_user(request))
    if not result.rows:
        modeladmin.message_user(request, _("No pending row without a bad key to resubmit."), messages.WARNING)
    else:
        modeladmin.message_user(
            request,
            _("%(rows)d rows resubmitted into their month as batch %(batches)s.")
            % {"rows": result.rows, "batches": ", ".join(f"#{b.pk}" for b in result.batches)},
            messages.SUCCESS,
        )


def _correct_and_resubmit(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, data: dict[str, Any], ids: list[int]
) -> int:
    table, wrong_key = data["wrong"].split("\t", 1)
    corrected = correct_quarantined(
        ids=ids,
        table=table,
        wrong_key=wrong_key,
        right_key=data["right_key"],
        remember_alias=data["remember_alias"],
        user=request_user(request),
    )
    pending = QuarantinedRow.objects.filter(pk__in=ids, state=QuarantineState.PENDING)
    _report(modeladmin, request, [pk for pk, problems in pending.values_list("pk", "problems") if not problems])
    return corrected


@admin.action(description=gettext_lazy("Correct the key and resubmit…"), permissions=["change"])
def correct_and_resubmit(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[QuarantinedRow]
) -> TemplateResponse | None:
    choices = _wrong_keys(queryset)
    if not choices:
        modeladmin.message_user(request, _("None of the selected rows is pending."), messages.WARNING)
        return None
    form = CorrectKeyForm(request.POST if "_apply" in request.POST else None, choices=choices)
    if form.is_bound and form.is_valid():
        ids = list(queryset.values_list("pk", flat=True))
        try:
            with transaction.atomic():  # corrected and resubmitted, or neither
                corrected = _correct_and_resubmit(modeladmin, request, form.cleaned_data, ids)
        except QuarantineError as exc:
            form.add_error("right_key", str(exc))
        else:
            modeladmin.message_user(request, _("%d rows corrected.") % corrected, messages.SUCCESS)
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Correct the key and resubmit"),
        "opts": modeladmin.model._meta,
        "form": form,
        "selected": queryset.count(),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/pipeline/quarantine_correct.html", context)


@admin.action(description=gettext_lazy("Resubmit the selected rows"), permissions=["change"])
def resubmit_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[QuarantinedRow]
) -> None:
    try:
        _report(modeladmin, request, list(queryset.values_list("pk", flat=True)))
    except QuarantineError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)


@admin.action(description=gettext_lazy("Correct by the suggestion and resubmit"), permissions=["change"])
def correct_by_suggestion(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[QuarantinedRow]
) -> None:
    try:
        result = correct_by_suggestions(ids=list(queryset.values_list("pk", flat=True)), user=request_user(request))
    except QuarantineError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    if result.resubmitted.rows:
        modeladmin.message_user(
            request,
            _("%(rows)d rows corrected by their suggestion and resubmitted as batch %(batches)s.")
            % {"rows": result.resubmitted.rows, "batches": ", ".join(f"#{b.pk}" for b in result.resubmitted.batches)},
            messages.SUCCESS,
        )
    if result.left:
        modeladmin.message_user(
            request,
            _("%d selected rows have a bad key without a suggestion: correct them by hand.") % result.left,
            messages.WARNING,
        )
    elif not result.resubmitted.rows:
        modeladmin.message_user(request, _("No pending row without a bad key to resubmit."), messages.WARNING)


@admin.register(QuarantinedRow)
class QuarantinedRowAdmin(admin.ModelAdmin):
    list_display = (
        "file_name",
        "sheet",
        "row_number",
        "month",
        "bad_keys",
        "reasons",
        "typo_suggestion",
        "state_badge",
        "batch_link",
        "resubmitted_link",
    )
    list_filter = ("state", "fact_table", "domain", "month")
    search_fields = ("bad_keys", "file_name")
    list_select_related = ("batch", "resubmitted_batch")
    actions = (correct_and_resubmit, correct_by_suggestion, resubmit_selected)
    list_per_page = 100
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # nothing from a file is dropped without a trace

    def get_readonly_fields(self, request: HttpRequest, obj: QuarantinedRow | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuarantinedRow]:
        return super().get_queryset(request).annotate(**best_quarantine_suggestion())

    @admin.display(description=gettext_lazy("probable typo"), ordering="suggestion_score")
    def typo_suggestion(self, obj: QuarantinedRow) -> SafeString | str:
        return typo_label(getattr(obj, "suggested_key", None), getattr(obj, "suggestion_score", None))

    @admin.display(description=gettext_lazy("reason"))
    def reasons(self, obj: QuarantinedRow) -> str:
        return "；".join(
            f"{p['table']}: {KeyProblem(p['reason']).label}" for p in obj.problems if p.get("reason") in KeyProblem
        )

    @admin.display(description=gettext_lazy("state"), ordering="state")
    def state_badge(self, obj: QuarantinedRow) -> SafeString:
        return badge(STATE_COLORS.get(obj.state, "#757575"), obj.get_state_display())

    @admin.display(description=gettext_lazy("batch"), ordering="batch")
    def batch_link(self, obj: QuarantinedRow) -> SafeString | str:
        return _batch_link(obj.batch)

    @admin.display(description=gettext_lazy("resubmitted as batch"))
    def resubmitted_link(self, obj: QuarantinedRow) -> SafeString | str:
        return _batch_link(obj.resubmitted_batch)
