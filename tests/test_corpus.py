"""The bad-input corpus (tests/corpus/cases.yml): every file through ``manage.py process_facts`` and the inbox."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.db import connection

from pipeline.facts.inbox import process_inbox
from pipeline.models import FactBatch, FactStatus, ScaleFact
from tests.facts_support import create_references

CORPUS = Path(__file__).parent / "corpus"
CASES = yaml.safe_load((CORPUS / "cases.yml").read_text(encoding="utf-8"))
pytestmark = pytest.mark.django_db


def _case_id(case: dict) -> str:
    return case["file"].removeprefix("规模明细_")


def test_every_corpus_file_has_a_case():
    files = {p.name for p in CORPUS.iterdir() if p.suffix != ".py" and p.name != "cases.yml"}
    assert files == {c["file"] for c in CASES}


def _process_facts(path: Path) -> tuple[int, str, dict]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("process_facts", "--domain", "annuity_performance", str(path), "--json", stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    return code, err.getvalue(), json.loads(out.getvalue())["files"][0]


def _check_loaded(case: dict, batch: FactBatch) -> None:
    assert batch.status == FactStatus.LOADED, batch.message
    assert (batch.rows_read, batch.rows_loaded) == (case["rows"], case["rows"]), batch.message
    assert ScaleFact.objects.count() == case["rows"]
    for column, wanted in (case.get("values") or {}).items():
        with connection.cursor() as cur:
            cur.execute(f'SELECT DISTINCT "{column}"::text FROM "规模明细"')
            found = {r[0] for r in cur.fetchall()}
        assert wanted in found, f"{column}: {wanted!r} not among {sorted(map(str, found))[:10]}"


def _check_rejected(case: dict, message: str) -> None:
    assert ScaleFact.objects.count() == 0
    for text in case["error"]:
        assert text in message, f"{text!r} not in {message!r}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_through_process_facts(case, tmp_path, config_copy):
    create_references()
    path = shutil.copy(CORPUS / case["file"], tmp_path / case["file"])

    code, stderr, summary = _process_facts(Path(path))

    if case["expect"] == "loaded":
        assert code == 0, stderr
        _check_loaded(case, FactBatch.objects.get(pk=summary["batch_id"]))
    else:
        assert code == 1 and summary["status"] == "rejected"
        assert stderr.count("\n") <= 1, "one line on stderr"
        _check_rejected(case, stderr)
        assert not FactBatch.objects.filter(status__in=[FactStatus.LOADED, FactStatus.RUNNING]).exists()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_through_the_inbox(case, tmp_path, settings, config_copy):
    create_references()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings.REFGOV_INBOX_DIR = inbox
    shutil.copy(CORPUS / case["file"], inbox / case["file"])

    result = process_inbox()
    if not result.processed and not result.rejected and not result.unmatched:
        result = process_inbox()  # a file is taken once it is seen unchanged by two scans

    if case.get("inbox") == "unmatched":
        assert case["file"] in str(result.unmatched) and ScaleFact.objects.count() == 0
    elif case["expect"] == "loaded":
        assert [p.file for p in result.processed] == [case["file"]], result.summary()
        assert (inbox / "processed" / case["file"]).is_file()
        _check_loaded(case, FactBatch.objects.get(domain="annuity_performance", status=FactStatus.LOADED))
    else:
        assert [r.file for r in result.rejected] == [case["file"]], result.summary()
        error = (inbox / "rejected" / f"{case['file']}.error.txt").read_text(encoding="utf-8")
        _check_rejected(case, error)
        assert not FactBatch.objects.filter(status__in=[FactStatus.LOADED, FactStatus.RUNNING]).exists()
