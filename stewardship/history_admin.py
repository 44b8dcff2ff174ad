"""Admin side of the reference history: admin saves under a stewardship context, the per-row history page (the
change form's 历史 button) and the undo of one change (confirm page, then POST)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _

from reference.history import (
    Action,
    FieldChange,
    RowEvent,
    context_events,
    context_size,
    context_touches_row,
    row_history,
    stewardship_context,
)
from reference.models import TrackedReference
from reference.registry import for_model, get_table
from stewardship.admin_typing import ReferenceModelAdmin, request_user
from stewardship.undo import UndoRefused, check_undo_permission, undo

HISTORY_LIMIT = 500
CONFIRM_LIMIT = 200


def display_value(value: Any, choices: dict[Any, Any] | None = None) -> str:
    if value is None or value == "":
        return "—"
    if choices and value in choices:
        return str(choices[value])
    if value is True:
        return _("Yes")
    if value is False:
        return _("No")
    return str(value)


def _rows(table: str, changes: list[FieldChange]) -> list[dict[str, Any]]:
    choices = {f.column: dict(f.flatchoices) for f in get_table(table).model._meta.concrete_fields if f.choices}
    return [
        {
            "label": c.label,
            "column": c.column,
            "before": display_value(c.before, choices.get(c.column)),
            "after": display_value(c.after, choices.get(c.column)),
        }
        for c in changes
    ]


def _event_rows(events: list[RowEvent], user: User | None = None) -> list[dict[str, Any]]:
    """Events with their field changes; ``undoable`` when ``user`` may be offered the undo (own changes, or all for
    a superuser; the confirm page checks the permissions the undo needs)."""
    return [
        {
            "event": e,
            "changes": _rows(e.table, e.changes),
            "undoable": user is not None and e.context_id is not None and (user.is_superuser or e.user_id == user.pk),
        }
        for e in events
    ]


class HistoryAdminMixin(ReferenceModelAdmin):
    """For a ModelAdmin of a reference table: every admin write is recorded with its user and action."""

    def save_model(self, request: HttpRequest, obj: TrackedReference, form: Any, change: Any) -> None:
        with stewardship_context(user=request_user(request), action=Action.EDIT if change else Action.ADD):
            super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: TrackedReference) -> None:
        with stewardship_context(user=request_user(request), action=Action.DELETE):
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TrackedReference]) -> None:
        with stewardship_context(user=request_user(request), action=Action.DELETE):
            super().delete_queryset(request, queryset)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_undo"
        return [
            path(
                "<path:object_id>/history/undo/<uuid:context_id>/",
                self.admin_site.admin_view(self.undo_view),
                name=name,
            ),
            *super().get_urls(),
        ]

    def _history_url(self, key: str) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[quote(key)])

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The row's changes from the trigger-written history (replaces the admin's LogEntry history)."""
        key = unquote(object_id)
        obj = self.get_object(request, key)
        if obj is None and not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if obj is not None and not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        opts = self.model._meta
        events = row_history(table=for_model(self.model).name, key=key, limit=HISTORY_LIMIT)
        context = {
            **self.admin_site.each_context(request),
            "title": _("History of %(object)s") % {"object": obj if obj is not None else key},
            "subtitle": None,
            "opts": opts,
            "object": obj,
            "object_id": object_id,
            "module_name": opts.verbose_name_plural,
            "entries": _event_rows(events, request_user(request)),
            "can_undo": self.has_change_permission(request),
            "limit": HISTORY_LIMIT,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/refgov/row_history.html", context)

    def undo_view(self, request: HttpRequest, object_id: str, context_id: uuid.UUID) -> HttpResponse:
        """Undo a change of this row (the URL's row: a context that did not touch it is not found here)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        key = unquote(object_id)
        if not context_touches_row(context_id=context_id, table=for_model(self.model).name, key=key):
            raise Http404(_("No change of this row belongs to this context."))
        history_url = self._history_url(key)
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": _("Undo this change?"),
            "subtitle": None,
            "opts": opts,
            "object_id": object_id,
            "module_name": opts.verbose_name_plural,
            "history_url": history_url,
        }
        request.current_app = self.admin_site.name
        try:
            check_undo_permission(context_id=context_id, user=request_user(request))
        except PermissionDenied as exc:
            context.update(title=_("This change cannot be undone by you"), refused=str(exc))
            return TemplateResponse(request, "admin/refgov/undo_confirm.html", context, status=403)
        if request.method == "POST":
            try:
                result = undo(context_id=context_id, user=request_user(request))
            except UndoRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("Undone: %(restored)d rows restored, %(reinserted)d re-inserted, %(removed)d removed.")
                    % {"restored": result.restored, "reinserted": result.reinserted, "removed": result.removed},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(history_url)
        events = context_events(context_id=context_id, limit=CONFIRM_LIMIT + 1)
        context.update(
            first=events[0],
            entries=_event_rows(events[:CONFIRM_LIMIT]),
            total=context_size(context_id=context_id) if len(events) > CONFIRM_LIMIT else len(events),
        )
        return TemplateResponse(request, "admin/refgov/undo_confirm.html", context)
