"""``manage.py process_facts`` parses its first workbook while Django starts; the reader takes it only if it fits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.db import connection

from pipeline.facts import prefetch
from pipeline.facts.readers import FactFileError, open_fact_file
from pipeline.facts.service import file_checksum
from pipeline.models import ScaleFact
from tests.facts_support import create_references, scale_row, write_xlsx

CONFIG = django_settings.BASE_DIR / "config"


def argv(*args: str) -> list[str]:
    return ["manage.py", "process_facts", "--domain", "annuity_performance", *args]


@pytest.fixture(autouse=True)
def nothing_pending():
    yield
    prefetch._pending.clear()
    prefetch._digests.clear()


def workbook(tmp_path, rows: int, name: str = "book.xlsx"):
    return write_xlsx(
        tmp_path / name, {"规模明细": [scale_row(计划名称=f"计划{i}") for i in range(rows)], "其他": [scale_row()]}
    )


def test_the_reader_takes_the_sheet_parsed_in_the_background(tmp_path):
    path = workbook(tmp_path, 300)
    prefetch.start_from_argv(argv("--verbosity", "0", str(path)), CONFIG)
    assert list(prefetch._pending) == [str(path.resolve())]

    file = open_fact_file(path, sheet="规模明细")

    assert prefetch._pending == {}
    rows = [row for chunk in file.chunks_with_row_numbers() for row in chunk]
    assert len(rows) == 300 and rows[-1][0] == 301 and rows[-1][1][file.columns.index("计划名称")] == "计划299"


def test_the_parsed_sheet_is_found_by_its_trimmed_name_as_the_reader_matches_it(tmp_path):
    path = write_xlsx(tmp_path / "padded.xlsx", {" 规模明细\u3000": [scale_row()]})
    prefetch.start_from_argv(argv(str(path)), CONFIG)

    assert prefetch.take(path, " 规模明细\u3000").name == " 规模明细\u3000"
    assert prefetch.take(path, " 规模明细\u3000") is None  # taken once


def test_a_file_changed_since_is_parsed_again(tmp_path):
    path = workbook(tmp_path, 300)
    prefetch.start_from_argv(argv(str(path)), CONFIG)
    prefetch._pending[str(path.resolve())].result()
    workbook(tmp_path, 5)  # the same name, other rows

    file = open_fact_file(path, sheet="规模明细")

    assert sum(len(chunk) for chunk in file.chunks()) == 5


def test_another_sheet_than_the_one_parsed_is_read_from_the_file(tmp_path):
    path = workbook(tmp_path, 300)
    prefetch.start_from_argv(argv(str(path)), CONFIG)  # the domain's sheet, 规模明细

    assert sum(len(chunk) for chunk in open_fact_file(path, sheet="其他").chunks()) == 1
    with pytest.raises(FactFileError, match="no sheet named '缺失'"):
        prefetch.start_from_argv(argv("--sheet=缺失", str(path)), CONFIG)
        open_fact_file(path, sheet="缺失")


@pytest.mark.parametrize(
    "args", [["manage.py", "check"], ["manage.py", "process_facts", "--domain", "x", "a.csv"], argv("missing.xlsx")]
)
def test_nothing_starts_for_other_commands_or_missing_files(args):
    prefetch.start_from_argv(args, CONFIG)
    assert prefetch._pending == {} and prefetch._digests == {}


def test_the_first_files_checksum_is_read_while_django_starts_and_used_only_if_unchanged(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(b"x" * 5_000_000)
    second.write_bytes(b"y")
    expected = (hashlib.sha256(first.read_bytes()).hexdigest(), 5_000_000)
    prefetch.start_from_argv(argv("--name", "upload.csv", str(first), str(second)), CONFIG)
    assert prefetch._pending == {} and list(prefetch._digests) == [str(first.resolve())]  # no sheet to parse

    assert file_checksum(first) == expected and prefetch._digests == {}
    assert file_checksum(second) == (hashlib.sha256(b"y").hexdigest(), 1)  # read by the load itself

    prefetch.start_from_argv(argv(str(first)), CONFIG)
    prefetch._digests[str(first.resolve())].result()
    first.write_bytes(b"z" * 10)  # changed since: read again
    assert file_checksum(first) == (hashlib.sha256(b"z" * 10).hexdigest(), 10)


def test_a_broken_workbook_is_left_to_the_reader_to_report(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"not a zip")
    prefetch.start_from_argv(argv(str(path)), CONFIG)

    with pytest.raises(FactFileError, match="broken.xlsx: not a readable Excel workbook"):
        open_fact_file(path, sheet="规模明细")


@pytest.mark.django_db(transaction=True)
def test_the_command_line_loads_a_workbook(tmp_path):
    create_references()
    path = workbook(tmp_path, 2_000)
    database = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SETTINGS_MODULE": "refgov.settings.dev",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REFGOV_REPORTS_DIR": str(tmp_path / "reports"),
    }

    result = subprocess.run(
        [sys.executable, str(django_settings.BASE_DIR / "manage.py"), *argv(str(path), "--json")[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["rows_loaded"] == 2_000
    assert ScaleFact.objects.count() == 2_000
