"""Review reports of auto-derived reference rows: selector, renderers (HTML, xlsx, csv), shares, batch report."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypedDict
from urllib.parse import quote

from django.conf import settings
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.alerts import check_shares
from pipeline.models import (
    DerivedReference,
    FactBatch,
    KeySuggestion,
    QuarantinedRow,
    QuarantineState,
    UnmappedValue,
)
from pipeline.notify import Attachment, notify
from pipeline.selectors import OpenValue, open_unmapped
from reference.models import TrackedReference
from reference.registry import all_tables, get_table
from refgov.formulae import XLSXWRITER_OPTIONS, escape_row

HEADERS = ["表", "键", "名称", "来源", "派生业务域", "派生时间", "来源文件", "行号", "引用事实行数"]
UNMAPPED_HEADERS = ["事实列", "取自", "值", "回退值", "行数", "批次数", "最近批次"]
FIRST_KEYS = 10
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Provenance(TypedDict):
    """The latest batch that derived a pending row."""

    batch_id: int
    file_name: str
    sheet: str
    row_numbers: list[int]
    fact_rows: int


class PendingRow(TypedDict):
    """One reference row pending review, as the review reports show it."""

    table: str
    key: str
    name: str
    source: str
    derived_from_domain: str | None
    derived_at: datetime | None
    provenance: Provenance | None


def reports_dir() -> Path:
    return Path(settings.REFGOV_REPORTS_DIR)


def pending_review(*, table: str | None = None, batch_id: int | None = None) -> list[PendingRow]:
    """Rows with needs_review=True, with provenance; one query per table plus one for all provenance."""
    tables = [get_table(table)] if table else all_tables()
    found: list[tuple[str, TrackedReference]] = []
    for ref in tables:
        qs = ref.model._default_manager.filter(needs_review=True).order_by("pk")
        if batch_id is not None:
            qs = qs.filter(pk__in=DerivedReference.objects.filter(table=ref.name, batch_id=batch_id).values("key"))
        found.extend((ref.name, obj) for obj in qs)

    provenance: dict[tuple[str, str], DerivedReference] = {}
    keys_by_table: dict[str, list[str]] = defaultdict(list)
    for name, obj in found:
        keys_by_table[name].append(str(obj.pk))
    if keys_by_table:
        match = Q()
        for name, keys in keys_by_table.items():
            match |= Q(table=name, key__in=keys)
        latest = (
            DerivedReference.objects.filter(match)
            .order_by("table", "key", "-created_at", "-id")
            .distinct("table", "key")
        )
        provenance = {(d.table, d.key): d for d in latest}

    order = {ref.name: i for i, ref in enumerate(tables)}
    rows: list[PendingRow] = []
    for name, obj in found:
        d = provenance.get((name, str(obj.pk)))
        rows.append(
            {
                "table": name,
                "key": str(obj.pk),
                "name": str(obj),
                "source": obj.source,
                "derived_from_domain": obj.derived_from_domain,
                "derived_at": obj.derived_at,
                "provenance": None
                if d is None
                else {
                    "batch_id": d.batch_id,
                    "file_name": d.file_name,
                    "sheet": d.sheet,
                    "row_numbers": list(d.row_numbers or []),
                    "fact_rows": d.fact_rows,
                },
            }
        )
    rows.sort(key=lambda r: (order[r["table"]], -(r["provenance"]["fact_rows"] if r["provenance"] else -1), r["key"]))
    return rows


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _cells(row: PendingRow) -> list[object]:
    """One report line in HEADERS order, as plain values."""
    p = row["provenance"]
    file = "" if p is None else (f"{p['file_name']} / {p['sheet']}" if p["sheet"] else p["file_name"])
    return [
        row["table"],
        row["key"],
        row["name"],
        row["source"],
        row["derived_from_domain"] or "",
        _when(row["derived_at"]),
        file,
        "" if p is None else ", ".join(str(n) for n in p["row_numbers"]),
        "" if p is None else p["fact_rows"],
    ]


def _per_table(rows: list[PendingRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["table"]] = counts.get(row["table"], 0) + 1
    return counts


def _unmapped_cells(value: OpenValue) -> list[object]:
    return [
        value.column,
        value.source_column,
        value.value,
        value.fallback or "NULL",
        value.rows,
        value.batches,
        f"#{value.last_batch}",
    ]


def render_html(rows: list[PendingRow], *, title: str, unmapped: list[OpenValue] | None = None) -> str:
    return render_to_string(
        "pipeline/review_report.html",
        {
            "title": title,
            "unmapped_headers": UNMAPPED_HEADERS,
            "unmapped": [_unmapped_cells(v) for v in unmapped or []],
            "headers": HEADERS,
            "lines": [_cells(r) for r in rows],
            "per_table": _per_table(rows),
            "total": len(rows),
            "generated_at": _when(timezone.now()),
        },
    )


def write_html(
    rows: list[PendingRow], path: Path, *, title: str = "待审核参考数据", unmapped: list[OpenValue] | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(rows, title=title, unmapped=unmapped), encoding="utf-8")
    return path


def write_xlsx(rows: list[PendingRow], path: Path, *, unmapped: list[OpenValue] | None = None) -> Path:
    import xlsxwriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path), XLSXWRITER_OPTIONS)
    try:
        sheet = workbook.add_worksheet("待审核")
        bold = workbook.add_format({"bold": True})
        sheet.write_row(0, 0, HEADERS, bold)
        for r, row in enumerate(rows, start=1):
            sheet.write_row(r, 0, escape_row(_cells(row)))
        sheet.freeze_panes(1, 0)
        sheet.set_column(0, len(HEADERS) - 1, 16)
        if unmapped:
            values = workbook.add_worksheet("未映射值")
            values.write_row(0, 0, UNMAPPED_HEADERS, bold)
            for r, value in enumerate(unmapped, start=1):
                values.write_row(r, 0, escape_row(_unmapped_cells(value)))
            values.set_column(0, len(UNMAPPED_HEADERS) - 1, 16)
    finally:
        workbook.close()
    return path


def write_csv(rows: list[PendingRow], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        writer.writerows(escape_row(_cells(r)) for r in rows)
    return path


WRITERS: dict[str, Callable[[list[PendingRow], Path], Path]] = {
    "html": write_html,
    "xlsx": write_xlsx,
    "csv": write_csv,
}


def write_review_report(
    *, table: str | None = None, fmt: str = "html", output: Path | None = None
) -> tuple[Path, dict[str, int]]:
    """Everything pending review (of one table or all) as a file; returns its path and the count per table.

    Without ``output`` the file is ``review_<local timestamp>.<fmt>`` in the reports directory."""
    rows = pending_review(table=table)
    output = Path(output) if output else reports_dir() / f"review_{timezone.localtime():%Y%m%d_%H%M%S}.{fmt}"
    output.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[fmt](rows, output)
    return output, {name: 0 for name in ([table] if table else [t.name for t in all_tables()])} | _per_table(rows)


def report_batch(batch_id: int, *, channel: str, alert_share: float) -> Path:
    """Write ``batch_<id>.html`` of the batch's pending rows, notify, and alert (once) on tables whose share is too
    high."""
    batch = FactBatch.objects.get(pk=batch_id)
    rows = pending_review(batch_id=batch_id)
    path = write_html(rows, reports_dir() / f"batch_{batch_id}.html", title=f"待审核参考数据 — {batch.file_name}")

    derived: dict[str, list[str]] = defaultdict(list)
    for table, key in (
        DerivedReference.objects.filter(batch_id=batch_id)
        .order_by("table", "-fact_rows", "key")
        .values_list("table", "key")
    ):
        derived[table].append(key)
    n = sum(len(keys) for keys in derived.values())
    lines = []
    for table, keys in derived.items():
        more = f", … (+{len(keys) - FIRST_KEYS})" if len(keys) > FIRST_KEYS else ""
        lines.append(f"{table}: {len(keys)} ({', '.join(keys[:FIRST_KEYS])}{more})")
    unmapped = list(UnmappedValue.objects.filter(batch_id=batch_id).order_by("-rows", "value"))
    if unmapped:
        lines.append(
            _("unmapped values (未映射值): %(values)s")
            % {
                "values": ", ".join(
                    f"{u.source_column} {u.value} → {u.column} {u.fallback or 'NULL'} ({u.rows})"
                    for u in unmapped[:FIRST_KEYS]
                )
                + (f", … (+{len(unmapped) - FIRST_KEYS})" if len(unmapped) > FIRST_KEYS else "")
            }
        )
    quarantined = QuarantinedRow.objects.filter(batch_id=batch_id).count()
    if quarantined:
        lines.append(_("quarantined rows (隔离行), keys that break the key rules: %(n)d") % {"n": quarantined})
    lines.append(f"report: {path}")
    notify(
        channel=channel,
        subject=_("%(n)d new auto-derived reference rows from %(file)s") % {"n": n, "file": batch.file_name}
        + (_(", %(n)d unmapped values") % {"n": len(unmapped)} if unmapped else ""),
        text="\n".join(lines),
        data={
            "batch_id": batch_id,
            "file": batch.file_name,
            "sheet": batch.sheet,
            "domain": batch.domain,
            "tables": {t: {"count": len(k), "keys": k[:FIRST_KEYS]} for t, k in derived.items()},
            "pending": len(rows),
            "quarantined": quarantined,
            "unmapped": [
                {"column": u.column, "from": u.source_column, "value": u.value, "rows": u.rows, "fallback": u.fallback}
                for u in unmapped
            ],
            "report": str(path),
        },
    )

    check_shares(threshold=alert_share, channel=channel)
    return path


def report_url(path: Path) -> str | None:
    """The link to a report in ``REFGOV_REPORTS_URL`` (where the reports directory is served), if set."""
    base = getattr(settings, "REFGOV_REPORTS_URL", "")
    return f"{base.rstrip('/')}/{quote(path.name)}" if base else None


def send_review_report(*, channel: str) -> tuple[Path, Path, dict[str, int]]:
    """The weekly review report: everything pending review written as HTML and xlsx to the reports directory, then
    sent through the notifiers (the e-mail carries the xlsx; the webhook and the log name it and its link). Returns
    the two files and the count per table."""
    rows = pending_review()
    unmapped = open_unmapped()
    stamp = f"{timezone.localtime():%Y%m%d_%H%M%S}"
    html = write_html(rows, reports_dir() / f"review_{stamp}.html", unmapped=unmapped)
    xlsx = write_xlsx(rows, reports_dir() / f"review_{stamp}.xlsx", unmapped=unmapped)
    counts = {t.name: 0 for t in all_tables()} | _per_table(rows)
    suggested = _with_suggestion(rows)
    lines = [
        _("%(table)s: %(n)d pending review, %(typos)d with a typo suggestion")
        % {"table": table, "n": n, "typos": suggested.get(table, 0)}
        for table, n in counts.items()
    ]
    lines.append(
        _("unmapped values (未映射值): %(n)d, %(rows)d fact rows with the fallback")
        % {"n": len(unmapped), "rows": sum(v.rows for v in unmapped)}
    )
    waiting = QuarantinedRow.objects.filter(state=QuarantineState.PENDING).count()
    lines.append(_("quarantined rows (隔离行) waiting for a correction: %(n)d") % {"n": waiting})
    attachment = Attachment(path=xlsx, mimetype=XLSX_TYPE, url=report_url(xlsx))
    lines.append(_("report: %(where)s") % {"where": attachment.url or xlsx})
    notify(
        channel=channel,
        subject=_("Weekly review report: %(n)d reference rows pending review") % {"n": len(rows)},
        text="\n".join(lines),
        data={
            "pending": counts,
            "typo_suggestions": suggested,
            "unmapped": [{"column": v.column, "value": v.value, "rows": v.rows} for v in unmapped],
            "quarantined": waiting,
            "report": str(xlsx),
            "report_url": attachment.url,
            "html": str(html),
        },
        attachments=[attachment],
    )
    return html, xlsx, counts


def _with_suggestion(rows: list[PendingRow]) -> dict[str, int]:
    """Per table, how many of the pending auto-derived rows have a typo suggestion."""
    keys: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        keys[row["table"]].append(row["key"])
    counts = {}
    for table, table_keys in keys.items():
        counts[table] = (
            KeySuggestion.objects.filter(table=table, key__in=table_keys, rank=1).values("key").distinct().count()
        )
    return counts
