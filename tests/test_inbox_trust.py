"""The inbox under hostile or unlucky input (issue 10, items 10–13a): one bad file never stops the others, links are
never followed, half-copied files are not loaded, zip bombs are not parsed, killed attempts are not retried, and files
nothing processes are reported. Real files, real links, real PostgreSQL."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from operations.orchestration import run_fact_window
from operations.tasks import TaskFailed, process_inbox_task
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.facts.inbox import UNFINISHED, process_inbox
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import process_fact_file
from pipeline.models import Alert, AlertKind, FactBatch, FactStatus, InboxFile, InboxState, ScaleFact
from reference.permissions import VIEWER_GROUP
from tests.facts_support import create_references, scale_row, write_csv, write_xlsx
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
LEGACY = LegacyDataset(plans=30, portfolios=40)


@pytest.fixture
def inbox(config_copy, tmp_path, settings) -> Path:
    create_references()
    settings.REFGOV_INBOX_DIR = tmp_path / "inbox"
    settings.REFGOV_NOTIFIERS = ["log"]
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


@pytest.fixture
def sent(caplog):
    """Subjects of the notifications sent so far (the log notifier)."""
    caplog.set_level(logging.WARNING, logger="refgov.notify")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "refgov.notify"]


def good_workbook(path: Path, month: str = "202412") -> Path:
    return FactWorkbook(month=month, scale_rows=30, income_rows=10, legacy=LEGACY).write(path)


def everything_said() -> str:
    """Every message an operator can read: batches, alerts and their notifications' texts."""
    batches = [m for m in FactBatch.objects.values_list("message", flat=True)]
    alerts = [f"{a.subject}\n{a.text}" for a in Alert.objects.all()]
    return "\n".join(batches + alerts)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# --- item 10: one file's failure, whatever it is, is that file's alone ---------------------------------------------


def test_a_file_name_that_is_not_utf8_is_rejected_and_the_others_load(inbox):
    bad = os.path.join(os.fsencode(inbox), b"202411_\xff\xfe_" + "规模明细.csv".encode())
    with open(bad, "w", encoding="utf-8", newline="") as fh:
        fh.write("月度,业务类型\n202411,企年投资\n")
    good_workbook(inbox / "202412_年金业务明细.xlsx")

    result = process_inbox()

    assert [p.file for p in result.processed] == ["202412_年金业务明细.xlsx"]
    assert FactBatch.objects.filter(status=FactStatus.LOADED).count() == 2
    assert not FactBatch.objects.exclude(status=FactStatus.LOADED).exists()  # never read: no batch at all
    rejected = os.listdir(os.fsencode(inbox / "rejected"))
    assert sorted(rejected) == [os.path.basename(bad), os.path.basename(bad) + b".error.txt"]
    error_text = (inbox / "rejected" / (os.fsdecode(os.path.basename(bad)) + ".error.txt")).read_text(encoding="utf-8")
    assert "202411_\\xff\\xfe_规模明细.csv" in error_text and "not UTF-8" in error_text
    [alert] = Alert.objects.filter(kind=AlertKind.INBOX_REJECTED)
    assert "202411_\\xff\\xfe_规模明细.csv" in alert.subject
    assert process_inbox().rejected == [] and listing(inbox) == ["processed", "rejected"]


def test_a_raw_database_error_rejects_that_file_only(inbox):
    """期末资产规模 = 1e30 does not fit numeric(20,2); whatever error that raises, the next file still loads."""
    write_csv(inbox / "202411_规模明细.csv", [scale_row(期末资产规模="1e30")])
    good_workbook(inbox / "202412_年金业务明细.xlsx")

    result = process_inbox()

    assert [p.file for p in result.processed] == ["202412_年金业务明细.xlsx"]
    [rejected] = result.rejected
    assert rejected.file == "202411_规模明细.csv" and rejected.errors[0].startswith("annuity_performance: ")
    assert (inbox / "rejected" / "202411_规模明细.csv.error.txt").exists()
    assert not FactBatch.objects.filter(status=FactStatus.RUNNING).exists()
    assert Alert.objects.filter(resolved_at__isnull=True, key__contains="202411_规模明细.csv").count() == 1
    before = FactBatch.objects.count()
    process_inbox()
    assert FactBatch.objects.count() == before  # the file left the inbox: no poll tries it again


@pytest.mark.parametrize("error", [MemoryError(), OSError(5, "Input/output error"), RuntimeError("a bug")])
def test_any_exception_while_loading_rejects_that_file_only(inbox, monkeypatch, error):
    """Fault injection: the reader raises after the batch was recorded as running (as a real MemoryError would)."""
    from pipeline.facts import service

    real = service.open_fact_file

    def failing(path, **kwargs):
        if Path(path).name.startswith("202411"):
            raise error
        return real(path, **kwargs)

    monkeypatch.setattr(service, "open_fact_file", failing)
    good_workbook(inbox / "202411_年金业务明细.xlsx", month="202411")
    good_workbook(inbox / "202412_年金业务明细.xlsx")

    result = process_inbox()

    assert [p.file for p in result.processed] == ["202412_年金业务明细.xlsx"]
    [rejected] = result.rejected
    assert f"unexpected error {type(error).__name__}" in rejected.errors[0]
    assert listing(inbox / "rejected") == ["202411_年金业务明细.xlsx", "202411_年金业务明细.xlsx.error.txt"]
    failed = FactBatch.objects.filter(file_name="202411_年金业务明细.xlsx")
    assert sorted(failed.values_list("status", flat=True)) == ["failed", "failed"]  # not left running
    assert all(type(error).__name__ in m for m in failed.values_list("message", flat=True))
    [alert] = Alert.objects.filter(resolved_at__isnull=True)  # the batches' failure was recorded by the inbox alone
    assert alert.kind == AlertKind.INBOX_REJECTED and "202411_年金业务明细.xlsx" in alert.subject


def test_a_file_that_cannot_be_moved_is_not_processed_again(inbox, monkeypatch):
    """Fault injection: moving out of the inbox fails twice; the file is loaded once and only the move is retried."""
    from pipeline.facts import inbox as inbox_module

    real, failures = inbox_module.move, [2]

    def flaky(src_fd, name, dst_fd):
        if failures[0]:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        return real(src_fd, name, dst_fd)

    monkeypatch.setattr(inbox_module, "move", flaky)
    good_workbook(inbox / "202412_年金业务明细.xlsx")

    assert process_inbox().processed == []
    assert FactBatch.objects.filter(status=FactStatus.LOADED).count() == 2
    assert InboxFile.objects.get().state == InboxState.STUCK
    assert process_inbox().processed == []  # still failing: nothing loaded again
    assert FactBatch.objects.count() == 2
    [alert] = Alert.objects.filter(kind=AlertKind.INBOX_REFUSED)
    assert alert.times_seen == 2 and "No space left on device" in alert.subject  # notified once, when opened

    result = process_inbox()
    assert [p.file for p in result.processed] == ["202412_年金业务明细.xlsx"] and FactBatch.objects.count() == 2
    assert listing(inbox / "processed") == ["202412_年金业务明细.xlsx"] and not InboxFile.objects.exists()
    assert Alert.objects.get(pk=alert.pk).resolved_at is not None


# --- item 11: links, special files and hostile names -----------------------------------------------------------------


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "secret.csv"
    path.parent.mkdir()
    path.write_text("SECRET-TOKEN-LINE,x\nmore secret\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_link_to_another_file_is_rejected_unread(inbox, secret, how):
    link = inbox / "202411_规模明细.csv"
    (os.symlink if how == "symlink" else os.link)(secret, link)
    good_workbook(inbox / "202412_年金业务明细.xlsx")

    result = process_inbox()

    assert [p.file for p in result.processed] == ["202412_年金业务明细.xlsx"]
    assert not FactBatch.objects.filter(file_name="202411_规模明细.csv").exists()
    assert "SECRET" not in everything_said()
    error_text = (inbox / "rejected" / "202411_规模明细.csv.error.txt").read_text(encoding="utf-8")
    assert "SECRET" not in error_text and ("symbolic link" in error_text or "hard links" in error_text)
    moved = inbox / "rejected" / "202411_规模明细.csv"
    assert moved.is_symlink() if how == "symlink" else moved.stat().st_ino == secret.stat().st_ino
    assert secret.read_text(encoding="utf-8").startswith("SECRET-TOKEN-LINE")  # the target itself is left alone
    assert Alert.objects.filter(kind=AlertKind.INBOX_REJECTED).count() == 1


def test_a_named_pipe_is_rejected_without_being_opened(inbox):
    os.mkfifo(inbox / "202411_规模明细.csv")

    result = process_inbox()

    assert [r.file for r in result.rejected] == ["202411_规模明细.csv"]
    assert "named pipe" in (inbox / "rejected" / "202411_规模明细.csv.error.txt").read_text(encoding="utf-8")


def test_a_link_planted_at_the_error_file_is_not_written_through(inbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    (inbox / "rejected").mkdir()
    os.symlink(victim, inbox / "rejected" / "202409_规模明细.xlsx.error.txt")
    (inbox / "202409_规模明细.xlsx").write_bytes(b"not a workbook")

    result = process_inbox()

    assert victim.read_text(encoding="utf-8") == "precious\n"
    [rejected] = result.rejected
    assert rejected.moved_to.endswith("rejected/202409_规模明细.1.xlsx")
    error_text = (inbox / "rejected" / "202409_规模明细.1.xlsx.error.txt").read_text(encoding="utf-8")
    assert "not a readable Excel workbook" in error_text


@pytest.mark.parametrize("folder", ["processed", "rejected"])
def test_a_linked_processed_or_rejected_folder_is_refused_loudly(inbox, tmp_path, config_copy, folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, inbox / folder)
    good_workbook(inbox / "202412_年金业务明细.xlsx")
    (inbox / "202409_规模明细.xlsx").write_bytes(b"not a workbook")

    for _ in range(2):
        result = process_inbox()
        assert result.processed == result.rejected == [] and f"{folder} is a symbolic link" in result.refused

    assert listing(elsewhere) == [] and not FactBatch.objects.exists()
    assert {"202409_规模明细.xlsx", "202412_年金业务明细.xlsx"} <= set(listing(inbox))
    [alert] = Alert.objects.filter(kind=AlertKind.INBOX_REFUSED)
    assert alert.times_seen == 2 and "symbolic link" in alert.subject
    edit_config(config_copy, lambda d: d.update(strategy="backfill_only"))  # no preload expected
    with pytest.raises(TaskFailed, match=f"inbox not processed: .*{folder} is a symbolic link"):
        process_inbox_task()  # the fact task fails: the run history shows it

    os.unlink(inbox / folder)
    assert [p.file for p in process_inbox().processed] == ["202412_年金业务明细.xlsx"]
    assert Alert.objects.get(pk=alert.pk).resolved_at is not None


def test_control_characters_in_a_name_are_escaped_and_rejected(inbox):
    name = "202411_规模明细\nINJECTED LINE\x1b[31m.csv"
    write_csv(inbox / name, [scale_row()])

    result = process_inbox()

    assert not FactBatch.objects.exists()
    [rejected] = result.rejected
    assert rejected.file == "202411_规模明细\\nINJECTED LINE\\x1b[31m.csv"
    error_text = (inbox / "rejected" / (name + ".error.txt")).read_text(encoding="utf-8")
    assert error_text.count("\n") == 1 and "\x1b" not in error_text and "\\nINJECTED LINE" in error_text
    [alert] = Alert.objects.filter(kind=AlertKind.INBOX_REJECTED)
    assert "\n" not in alert.subject and "\x1b" not in alert.subject + alert.text


# --- item 12: settled files only, and no cut-off last record --------------------------------------------------------


def test_a_copy_with_an_old_mtime_waits_until_it_stops_changing(inbox, settings):
    settings.REFGOV_INBOX_SETTLE_SECONDS = 1
    path = inbox / "202411_规模明细.csv"
    rows = [scale_row(计划名称=f"计划{i}") for i in range(1, 7)]
    write_csv(path, rows)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])  # half copied, with the source's old mtime (cp -p, rsync -t)
    os.utime(path, (time.time() - 3600, time.time() - 3600))

    assert process_inbox().settling == [path.name] and not FactBatch.objects.exists()
    time.sleep(1.1)
    with path.open("ab") as fh:  # the copy goes on
        fh.write(whole[len(whole) * 2 // 3 :])
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert process_inbox().settling == [path.name] and not FactBatch.objects.exists()
    time.sleep(1.1)

    result = process_inbox()  # unchanged since the last scan, a second ago

    assert [p.file for p in result.processed] == [path.name]
    assert FactBatch.objects.get().rows_loaded == 6 and ScaleFact.objects.count() == 6


def test_names_of_copies_in_progress_are_left_alone_and_a_renamed_file_loads_at_once(inbox):
    """The rename convention: copy as .name or name.part / .tmp, then rename. Tests settle 0: first sight loads."""
    for name in (".202411_规模明细.csv", "202411_规模明细.csv.part", "202411_规模明细.csv.tmp"):
        write_csv(inbox / name, [scale_row()])

    result = process_inbox()

    assert result.unmatched == result.rejected == result.processed == [] and not Alert.objects.exists()
    os.rename(inbox / "202411_规模明细.csv.part", inbox / "202411_规模明细.csv")
    assert [p.file for p in process_inbox().processed] == ["202411_规模明细.csv"]


@pytest.mark.parametrize(
    "tail, reason",
    [
        ("202411,企年投资,单一计划,P0001", "has 4 of the header's 22 columns"),
        ('202411,企年投资,单一计划,P0001,"计划1 cut', "ends inside a quoted field"),
    ],
)
def test_a_cut_off_last_record_is_rejected_naming_its_row(inbox, tail, reason):
    path = write_csv(inbox / "202411_规模明细.csv", [scale_row(), scale_row()])
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.write(tail)  # no line break at the end: the copy stopped here

    with pytest.raises(FactFileError, match=rf"^202411_规模明细.csv, row 4: the (file|last row) .*{reason}"):
        process_fact_file(domain="annuity_performance", path=path)

    [rejected] = process_inbox().rejected
    assert "row 4" in rejected.errors[0] and reason in rejected.errors[0]
    assert not ScaleFact.objects.exists()


def test_a_complete_last_record_without_a_line_break_loads(inbox):
    path = write_csv(inbox / "202411_规模明细.csv", [scale_row(), scale_row()])
    path.write_bytes(path.read_bytes().rstrip(b"\r\n"))

    assert [p.file for p in process_inbox().processed] == [path.name] and ScaleFact.objects.count() == 2


# --- item 13: zip bombs, rows per sheet, attempts killed -------------------------------------------------------------


def zip_bomb(path: Path, tmp_path: Path) -> Path:
    """A workbook whose sheet 规模明细 is 20 MB of XML in less than 200 kB."""
    small = write_xlsx(tmp_path / "small.xlsx", {"规模明细": [scale_row()]})
    row = "".join(f'<c t="inlineStr"><is><t>{"x" * 40}</t></is></c>' for _ in range(20))
    with zipfile.ZipFile(small) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                head, _, _ = data.decode().partition("<sheetData>")
                data = f"{head}<sheetData>{f'<row>{row}</row>' * 20_000}</sheetData></worksheet>".encode()
            out.writestr(info.filename, data)
    assert path.stat().st_size < 200_000
    return path


def test_a_zip_bomb_is_refused_before_it_is_parsed(inbox, tmp_path):
    bomb = zip_bomb(inbox / "202411_规模明细.xlsx", tmp_path)

    with pytest.raises(FactFileError, match=r"sheet1.xml' expands [\d,]+ times .*\(REFGOV_XLSX_MAX_RATIO\)"):
        process_fact_file(domain="annuity_performance", path=bomb)
    assert "REFGOV_XLSX_MAX_RATIO" in process_inbox().rejected[0].errors[0]


def test_the_command_line_prefetch_does_not_parse_a_zip_bomb_either(tmp_path, settings):
    from pipeline.facts import prefetch
    from pipeline.facts.archive import ArchiveTooLarge

    bomb = zip_bomb(tmp_path / "202411_规模明细.xlsx", tmp_path)
    argv = ["manage.py", "process_facts", "--domain", "annuity_performance", str(bomb)]
    prefetch.start_from_argv(argv, settings.BASE_DIR / "config")
    try:
        assert isinstance(prefetch._pending[str(bomb.resolve())].exception(timeout=30), ArchiveTooLarge)
    finally:
        prefetch._pending.clear()


def test_workbook_size_and_row_limits_are_configurable(inbox, settings):
    path = good_workbook(inbox / "202412_年金业务明细.xlsx")
    settings.REFGOV_XLSX_MAX_MEMBER_BYTES = 4096
    too_large = r"part '[^']+' expands to [\d,]+ bytes, more than the limit of 4,096 bytes \(REFGOV_XLSX_MAX_MEMBER_"
    with pytest.raises(FactFileError, match=too_large):
        process_fact_file(domain="annuity_performance", path=path)
    settings.REFGOV_XLSX_MAX_MEMBER_BYTES = 256 << 20
    settings.REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES = 10_000
    with pytest.raises(FactFileError, match=r"the workbook expands to [\d,]+ bytes, more than the limit of 10,000 "):
        process_fact_file(domain="annuity_performance", path=path)
    settings.REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES = 512 << 20
    settings.REFGOV_FACT_MAX_ROWS_PER_SHEET = 20
    too_long = (
        r"^202412_年金业务明细.xlsx, sheet 规模明细: the sheet has 31 rows, more than the limit of 20 "
        r"\(REFGOV_FACT_MAX_"
    )
    with pytest.raises(FactFileError, match=too_long):
        process_fact_file(domain="annuity_performance", path=path)

    [rejected] = process_inbox().rejected
    assert any("sheet 规模明细: the sheet has 31 rows" in e for e in rejected.errors)
    assert not any("收入明细" in e for e in rejected.errors)  # 11 rows: within the limit, loaded


def test_the_settings_defaults_are_the_readers_defaults():
    from django.conf import settings as live

    from pipeline.facts.archive import DEFAULT_LIMITS, SETTING_NAMES

    assert {name: getattr(live, setting) for name, setting in SETTING_NAMES.items()} == DEFAULT_LIMITS.__dict__


@pytest.mark.django_db(transaction=True)
def test_an_attempt_killed_mid_way_is_rejected_not_retried(config_copy, tmp_path, settings, sent):
    create_references()
    inbox = tmp_path / "inbox"
    settings.REFGOV_INBOX_DIR, settings.REFGOV_NOTIFIERS = inbox, ["log"]
    edit_config(config_copy, lambda d: d.update(strategy="backfill_only"))
    path = FactWorkbook(month="202411", scale_rows=200_000, legacy=LEGACY).write_csv(inbox / "202411_规模明细.csv")
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REFGOV_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="refgov.settings.dev",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REFGOV_CONFIG_DIR=str(config_copy),
        REFGOV_INBOX_DIR=str(inbox),
        REFGOV_INBOX_SETTLE_SECONDS="0",
        REFGOV_REPORTS_DIR=str(tmp_path / "reports"),
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup(); import pipeline.facts.inbox as i; i.process_inbox()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not InboxFile.objects.filter(state=InboxState.PROCESSING).exists():
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never started the file"
            time.sleep(0.05)
        time.sleep(0.5)  # well into the load
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # as the kernel's OOM killer would
        worker.wait(10)
    assert path.exists()

    deadline = time.monotonic() + 30
    while (result := process_inbox()).busy:  # until PostgreSQL has seen the worker's session end
        assert time.monotonic() < deadline
        time.sleep(0.1)

    [rejected] = result.rejected
    assert rejected.errors == [f"202411_规模明细.csv: {UNFINISHED}"]
    assert listing(inbox / "rejected") == ["202411_规模明细.csv", "202411_规模明细.csv.error.txt"]
    assert not FactBatch.objects.filter(status=FactStatus.RUNNING).exists() and not ScaleFact.objects.exists()
    assert FactBatch.objects.count() <= 1 and not InboxFile.objects.exists()
    assert sum("202411_规模明细.csv" in m and "did not finish" in m for m in sent()) == 1
    assert process_inbox().rejected == [] and FactBatch.objects.count() <= 1


# --- item 13a: files nobody recognises, real names, month folders with versions ------------------------------------


def test_unmatched_files_alert_once_and_show_on_the_run_history(inbox, client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    client.force_login(viewer)
    (inbox / "notes.txt").write_text("hello", encoding="utf-8")
    (inbox / "202411").mkdir()  # a month folder without version folders
    for _ in range(2):
        window = run_fact_window(trigger="poll")
        assert window.outcome == "nothing waiting" and sorted(window.screened.unmatched) == ["202411", "notes.txt"]

    alerts = Alert.objects.filter(kind=AlertKind.INBOX_UNMATCHED, resolved_at__isnull=True)
    assert sorted(a.data["file"] for a in alerts) == ["202411/", "notes.txt"]
    assert [a.times_seen for a in alerts] == [1, 1]  # raised once, not at every poll
    page = client.get("/admin/history/").content.decode()
    attention = page.split('id="refgov-inbox-attention"')[1].split("</table>")[0]
    assert "notes.txt" in attention and "202411/" in attention and "V1, V2" in attention
    assert "notes.txt" in client.get("/admin/pipeline/inboxfile/").content.decode()

    (inbox / "notes.txt").unlink()
    run_fact_window(trigger="poll")
    still_open = Alert.objects.filter(kind=AlertKind.INBOX_UNMATCHED, resolved_at__isnull=True)
    assert [a.data["file"] for a in still_open] == ["202411/"]
    page = client.get("/admin/history/").content.decode()
    attention = page.split('id="refgov-inbox-attention"')[1].split("</table>")[0]
    assert "notes.txt" not in attention and "202411/" in attention
    assert "status-resolved" in page.split("notes.txt")[1]  # the alert's end is on the history too


def test_the_real_monthly_workbook_name_is_loaded_by_both_domains(inbox):
    name = "【for年金分战区经营分析】24年11月年金规模收入数据 1127.xlsx"
    good_workbook(inbox / name, month="202411")

    result = process_inbox()

    [processed] = result.processed
    assert processed.file == name
    assert sorted(FactBatch.objects.filter(status=FactStatus.LOADED).values_list("domain", "sheet")) == [
        ("annuity_income", "收入明细"),
        ("annuity_performance", "规模明细"),
    ]


def test_a_month_folder_loads_its_latest_version(inbox):
    versions = inbox / "202411" / "收集数据" / "数据采集"
    v1 = FactWorkbook(month="202411", scale_rows=50, income_rows=10, legacy=LEGACY)
    v1.write(versions / "V1" / "24年11月规模收入数据.xlsx")
    v2 = FactWorkbook(month="202411", scale_rows=40, income_rows=8, legacy=LEGACY, seed=7)
    v2.write(versions / "V2" / "24年11月规模收入数据_更正.xlsx")
    (versions / "V2" / "说明.docx").write_bytes(b"notes")
    (inbox / "misc" / "V3").mkdir(parents=True)  # not a month folder: ignored as before
    good_workbook(inbox / "misc" / "V3" / "202411_规模明细.xlsx")

    result = process_inbox()

    [processed] = result.processed
    assert processed.file == "202411" and processed.version == "V2"
    batches = FactBatch.objects.filter(status=FactStatus.LOADED)
    assert sorted(batches.values_list("domain", "rows_read")) == [("annuity_income", 8), ("annuity_performance", 40)]
    assert all("/202411/收集数据/数据采集/V2/24年11月规模收入数据_更正.xlsx" in b.file_path for b in batches)
    assert all(
        b.message.startswith("month folder 202411, version V2; older versions not loaded: 202411/收集数据/数据采集/V1")
        for b in batches
    )
    assert ScaleFact.objects.count() == 40
    moved = inbox / "processed" / "202411" / "收集数据" / "数据采集"
    assert listing(moved) == ["V1", "V2"] and listing(inbox) == ["misc", "processed", "rejected"]
    assert not Alert.objects.exists()


def test_a_version_folder_under_a_hostile_folder_name_is_rejected_unread(inbox):
    good_workbook(inbox / "202411" / "收集\n数据" / "V1" / "24年11月规模收入数据.xlsx", month="202411")

    [rejected] = process_inbox().rejected

    assert rejected.file == "202411" and "202411/收集\\n数据/V1: a folder name contains control" in rejected.errors[0]
    assert not FactBatch.objects.exists() and listing(inbox / "rejected") == ["202411", "202411.error.txt"]
