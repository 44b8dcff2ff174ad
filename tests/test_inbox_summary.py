"""The inbox's summary (what the fact task returns as JSON) keeps its keys and values: the results are typed inside,
the summary outside is what it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.facts.inbox import process_inbox
from pipeline.models import FactBatch
from tests.facts_support import create_references, scale_row, write_csv

pytestmark = pytest.mark.django_db
BATCH_KEYS = [
    "domain",
    "batch_id",
    "status",
    "dry_run",
    "file",
    "sheet",
    "months",
    "rows_read",
    "rows_loaded",
    "rows_replaced",
    "new_references",
    "filled_references",
    "derived",
    "rows_quarantined",
    "unmapped",
    "message",
]


@pytest.fixture
def inbox(config_copy, tmp_path, settings) -> Path:
    create_references()
    settings.REFGOV_INBOX_DIR = tmp_path / "inbox"
    settings.REFGOV_NOTIFIERS = ["log"]
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


def test_the_summary_lists_each_processed_entry_with_its_batches_and_each_rejected_one_with_its_errors(inbox):
    workbook = inbox / "202411" / "收集数据" / "V1" / "24年11月规模收入数据.xlsx"
    FactWorkbook(month="202411", scale_rows=30, income_rows=10, legacy=LegacyDataset(plans=30, portfolios=40)).write(
        workbook
    )
    write_csv(inbox / "202412_规模明细.csv", [scale_row(月度="202412", 期末资产规模="1e30")])

    summary = json.loads(json.dumps(process_inbox().summary()))

    assert list(summary) == ["processed", "rejected", "unmatched", "settling", "refused", "busy"]
    assert (summary["unmatched"], summary["settling"], summary["refused"], summary["busy"]) == ([], [], "", False)
    [processed] = summary["processed"]
    assert processed == {
        "file": "202411",
        "moved_to": str(inbox / "processed" / "202411"),
        "batches": processed["batches"],
        "version": "V1",
    }
    assert list(processed) == ["file", "moved_to", "batches", "version"]
    moved = str((inbox / "202411" / "收集数据" / "V1" / workbook.name).resolve())
    for batch in processed["batches"]:
        row = FactBatch.objects.get(domain=batch["domain"], file_path=moved)
        assert list(batch) == [*BATCH_KEYS, "version"]
        assert batch["batch_id"] == row.pk and batch["status"] == "loaded" and batch["dry_run"] is False
        assert batch["file"] == moved and batch["months"] == ["2024-11-01"] and batch["version"] == "V1"
        assert batch["message"] == row.message and row.message.startswith("month folder 202411, version V1: read ")
    assert sorted(b["domain"] for b in processed["batches"]) == ["annuity_income", "annuity_performance"]
    [rejected] = summary["rejected"]
    assert list(rejected) == ["file", "moved_to", "errors", "version"]
    assert rejected["file"] == "202412_规模明细.csv" and rejected["version"] == ""
    assert rejected["moved_to"] == str(inbox / "rejected" / "202412_规模明细.csv")
    assert len(rejected["errors"]) == 1 and rejected["errors"][0].startswith("annuity_performance: ")
