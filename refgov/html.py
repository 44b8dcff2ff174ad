"""Small HTML pieces the admin pages share."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString

#: a value with no color of its own
NEUTRAL = "#616161"


def badge(color: str, label: str | Promise) -> SafeString:
    """A rounded label in white on ``color`` (a status, a source); the label is escaped."""
    return format_html(
        '<span style="display:inline-block;padding:1px 8px;border-radius:8px;'
        'color:#fff;background:{};white-space:nowrap">{}</span>',
        color,
        label,
    )
