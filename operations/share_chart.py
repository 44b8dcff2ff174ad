"""The auto-derived share and pending count over time as an inline SVG chart (no external resources: the admin works
on a closed network), from the daily snapshots of ``pipeline.share_history``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from pipeline.models import ShareSnapshot

CHART_DAYS = 90
COLORS = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f"]
WIDTH, PANEL, PAD = 640, 110, 34


@dataclass
class Series:
    table: str
    color: str
    points: list[tuple[dt.date, float, int]]  # day, share, pending


def series(*, days: int = CHART_DAYS, today: dt.date | None = None) -> list[Series]:
    since = (today or timezone.localdate()) - dt.timedelta(days=days - 1)
    by_table: dict[str, list[tuple[dt.date, float, int]]] = {}
    for snap in ShareSnapshot.objects.filter(day__gte=since).order_by("day"):
        by_table.setdefault(snap.table, []).append((snap.day, snap.share, snap.pending))
    return [Series(t, COLORS[i % len(COLORS)], pts) for i, (t, pts) in enumerate(sorted(by_table.items()))]


def _polyline(points: list[tuple[float, float]], color: str) -> str:
    if len(points) == 1:
        x, y = points[0]
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>'
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{coords}"/>'


def chart_svg(*, threshold: float, days: int = CHART_DAYS, today: dt.date | None = None) -> SafeString:
    """Two panels over the last ``days`` days: auto-derived share per table (with the threshold) and pending rows."""
    today = today or timezone.localdate()
    lines = series(days=days, today=today)
    if not lines:
        return mark_safe("")
    first = today - dt.timedelta(days=days - 1)
    span = max((today - first).days, 1)
    max_share = max([threshold * 1.25] + [p[1] for s in lines for p in s.points])
    max_pending = max([1] + [p[2] for s in lines for p in s.points])

    def x(day: dt.date) -> float:
        return PAD + (WIDTH - 2 * PAD) * (day - first).days / span

    def y(value: float, top: int, scale: float) -> float:
        return top + PANEL - PANEL * value / scale

    share_top, pending_top = 18, 18 + PANEL + 36
    height = pending_top + PANEL + 44
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(_("Auto-derived share and pending rows over time"))}" id="refgov-share-chart" '
        'style="max-width:760px;font:11px sans-serif">',
        f'<text x="{PAD}" y="{share_top - 6}">{escape(_("auto-derived share"))} (max {max_share:.0%})</text>',
        f'<text x="{PAD}" y="{pending_top - 6}">{escape(_("pending review"))} (max {max_pending:,})</text>',
    ]
    for top in (share_top, pending_top):
        parts.append(
            f'<rect x="{PAD}" y="{top}" width="{WIDTH - 2 * PAD}" height="{PANEL}" fill="none" stroke="#ccc"/>'
        )
    ty = y(threshold, share_top, max_share)
    parts.append(
        f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#c62828" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{WIDTH - PAD + 2}" y="{ty + 4:.1f}" fill="#c62828">{threshold:.0%}</text>')
    for s in lines:
        parts.append(_polyline([(x(d), y(share, share_top, max_share)) for d, share, _ in s.points], s.color))
        parts.append(_polyline([(x(d), y(pending, pending_top, max_pending)) for d, _, pending in s.points], s.color))
    legend_y = pending_top + PANEL + 30
    for i, s in enumerate(lines):
        lx = PAD + i * 150
        last = s.points[-1]
        parts.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{s.color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{legend_y}">{escape(s.table)} {last[1]:.1%} · {last[2]:,}</text>')
    parts.append(f'<text x="{PAD}" y="{pending_top + PANEL + 14}">{first:%Y-%m-%d}</text>')
    parts.append(f'<text x="{WIDTH - PAD}" y="{pending_top + PANEL + 14}" text-anchor="end">{today:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it is escaped above
