"""``manage.py process_facts -``: a CSV piped into standard input loads like the same file given as an argument."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from pipeline.demo.legacy import plan_code
from pipeline.models import FactBatch, FactStatus, ScaleFact
from tests.facts_support import create_references, scale_row, write_csv

NAME = "202411_规模明细.csv"


def manage(*args: str, stdin: bytes, tmp_path) -> subprocess.CompletedProcess:
    database = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SETTINGS_MODULE": "refgov.settings.dev",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REFGOV_REPORTS_DIR": str(tmp_path / "reports"),
        "REFGOV_CONFIG_DIR": str(django_settings.REFGOV_CONFIG_DIR),
    }
    return subprocess.run(
        [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "process_facts", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=120,
    )


def rows(**changes) -> list[dict]:
    return [
        scale_row(),
        scale_row(计划号=plan_code(2)),
        scale_row(计划号="N9001", **changes),
        scale_row(计划号="N9002"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_csv_piped_into_standard_input_loads_like_the_file(tmp_path, config_copy):
    create_references()
    path = write_csv(tmp_path / NAME, rows())

    piped = manage(
        "-", "--domain", "annuity_performance", "--name", NAME, "--json", stdin=path.read_bytes(), tmp_path=tmp_path
    )

    assert piped.returncode == 0, piped.stderr.decode()
    [item] = json.loads(piped.stdout)["files"]
    assert (item["file"], item["name"], item["status"], item["rows_loaded"]) == ("<stdin>", NAME, "loaded", 4)
    assert item["new_references"]["年金计划"] == 2
    batch = FactBatch.objects.get()
    assert (batch.file_name, batch.file_path, batch.rows_loaded) == (NAME, "<stdin>", 4)
    assert ScaleFact.objects.filter(batch=batch).count() == 4

    # the same bytes as a file argument: the same checksum, so the fact table holds it already
    as_file = manage("--domain", "annuity_performance", str(path), "--json", stdin=b"", tmp_path=tmp_path)
    assert as_file.returncode == 0, as_file.stderr.decode()
    [again] = json.loads(as_file.stdout)["files"]
    assert again["status"] == "skipped" and f"already loaded as batch #{batch.pk} ({NAME}" in again["message"]


@pytest.mark.django_db(transaction=True)
def test_a_bad_csv_from_standard_input_fails_like_the_file(tmp_path, config_copy):
    create_references()
    data = write_csv(tmp_path / NAME, rows(月度="2024年13月")).read_bytes()

    piped = manage("-", "--domain", "annuity_performance", "--name", NAME, stdin=data, tmp_path=tmp_path)
    as_file = manage("--domain", "annuity_performance", str(tmp_path / NAME), stdin=b"", tmp_path=tmp_path)

    assert piped.returncode == as_file.returncode == 1
    expected = f"process_facts: 1 of 1 files not loaded: {NAME}, row 4, column 月度: '2024年13月' is not a month"
    last = [result.stderr.decode().splitlines()[-1] for result in (piped, as_file)]  # the logs come before
    assert last[0] == last[1] and last[0].startswith(expected)
    assert f"<stdin> ({NAME}): rejected" in piped.stdout.decode()
    assert sorted(FactBatch.objects.values_list("file_path", "status")) == sorted(
        [("<stdin>", FactStatus.REJECTED), (str((tmp_path / NAME).resolve()), FactStatus.REJECTED)]
    )
    assert ScaleFact.objects.count() == 0


def run_refused(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("process_facts", *args, stdout=out, stderr=err)
    assert exit_.value.code == 1
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_standard_input_without_a_name_is_refused(config_copy):
    out, err = run_refused("-", "--domain", "annuity_performance")

    assert err.startswith("process_facts: -: --name is required to read standard input")
    assert FactBatch.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "202411_规模收入数据.xlsx"], "only CSV is read from standard input"),
        (["--name", "../x.csv"], "a file name without folders or control characters"),
        (["--name", "x.pdf"], "unsupported file type '.pdf'"),
    ],
)
def test_standard_input_names_that_are_not_a_csv_file_name_are_refused(config_copy, args, message):
    out, err = run_refused("-", "--domain", "annuity_performance", *args)

    assert message in err and FactBatch.objects.count() == 0


@pytest.mark.django_db
def test_a_name_without_standard_input_is_refused(config_copy, tmp_path):
    path = write_csv(tmp_path / NAME, rows())

    out, err = run_refused(str(path), "--domain", "annuity_performance", "--name", "other.csv", "--json")

    assert "it names standard input; use it with -" in err
    assert json.loads(out)["status"] == "error" and FactBatch.objects.count() == 0


def test_the_workbook_prefetch_does_not_take_the_name_of_standard_input_for_a_file(tmp_path):
    from pipeline.facts import prefetch

    workbook = tmp_path / "202411_规模收入数据.xlsx"
    workbook.write_bytes(b"not parsed")
    argv = ["manage.py", "process_facts", "-", "--domain", "annuity_performance", "--name", str(workbook)]

    try:
        prefetch.start_from_argv(argv, django_settings.BASE_DIR / "config")
        assert prefetch._pending == {}
    finally:
        prefetch._pending.clear()
