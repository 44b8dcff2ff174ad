"""The admin index's dashboard (``{% refgov_dashboard %}``), for users who may view the reference tables."""

from __future__ import annotations

from django import template

from operations.dashboard import Dashboard, dashboard

register = template.Library()


@register.inclusion_tag("admin/refgov/dashboard.html", takes_context=True)
def refgov_dashboard(context: template.Context) -> dict[str, Dashboard | None]:
    request = context.get("request")
    allowed = request is not None and request.user.has_perm("reference.view_annuityplan")
    return {"board": dashboard() if allowed else None}
