from django import template

from operations.dashboard import dashboard

register = template.Library()


@register.inclusion_tag("admin/refgov/dashboard.html", takes_context=True)
def refgov_dashboard(context):
    request = context.get("request")
    allowed = request is not None and request.user.has_perm("reference.view_annuityplan")
    return {"board": dashboard() if allowed else None}
