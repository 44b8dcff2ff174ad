"""Admin pages that are not a model's changelist: the run history."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin, messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from operations.run_history import inbox_attention, night_range, run_history


@permission_required("pipeline.view_syncrun", raise_exception=True)
def run_history_view(request: HttpRequest) -> TemplateResponse:
    day = None
    if raw := request.GET.get("day"):
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            messages.error(
                request, _("Not a date: %(value)s (expected YYYY-MM-DD); showing the last 24 hours.") % {"value": raw}
            )
    since, until = night_range(day)
    shown = day or timezone.localdate()
    context = {
        **admin.site.each_context(request),
        "title": _("Run history"),
        "history": run_history(since=since, until=until),
        "inbox_attention": inbox_attention(),
        "day": day,
        "previous_day": (shown - dt.timedelta(days=1)).isoformat(),
        "next_day": (shown + dt.timedelta(days=1)).isoformat() if shown < timezone.localdate() else None,
    }
    return TemplateResponse(request, "admin/refgov/history.html", context)
