"""Runs always end in a recorded state, and secrets never reach a message, a log, a failure record or repr().

Real processes are killed with SIGKILL in the middle of a fact load and of a preload; the next run closes their
records as ``abandoned`` (and never a run that is still alive). Real PostgreSQL and MariaDB."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.views.debug import ExceptionReporter
from django_q.models import Task
from django_q.tasks import async_task

from operations.tasks import preload_task
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.facts.service import process_fact_file
from pipeline.models import Alert, FactBatch, FactStatus, RunStatus, ScaleFact, SyncRun
from pipeline.notify import notify
from pipeline.preload import run_preload
from pipeline.preload.service import ReferenceSyncService
from pipeline.runs_liveness import close_abandoned_runs, is_alive, lock_namespace, running_record
from pipeline.sources.legacy_mysql import LegacyTableReader, MySQLServer, SourceError
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv

ROOT = Path(__file__).resolve().parent.parent
SMALL = LegacyDataset(plans=30, portfolios=40)
WAIT = 60


@pytest.fixture
def logs(caplog):
    """Everything refgov and django-q log (refgov's loggers do not propagate to the root, where caplog listens)."""
    caplog.set_level(logging.DEBUG)
    attached = [logging.getLogger(name) for name in ("refgov", "django-q")]
    for logger in attached:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in attached:
        logger.removeHandler(caplog.handler)


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REFGOV_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="refgov.settings.dev",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        LEGACY_MYSQL_URL=django_settings.LEGACY_MYSQL_URL,
        REFGOV_CONFIG_DIR=str(django_settings.REFGOV_CONFIG_DIR),
        REFGOV_REPORTS_DIR=str(tmp_path / "reports"),
        **extra,
    )
    return env


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=subprocess_env(tmp_path),
        stdout=(tmp_path / "out.log").open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()) is not None and value is not False:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen, record) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # The server ends the session (and drops its locks) once it notices the client is gone.
    wait_for(lambda: not is_alive(record), "the killed process's session to end")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("delay", [0.0, 0.8])
def test_a_fact_load_killed_midway_is_closed_as_abandoned_by_the_next_load(tmp_path, delay):
    create_references()
    legacy = LegacyDataset(plans=PLANS, portfolios=PORTFOLIOS)
    big = FactWorkbook(scale_rows=200_000, new_plans=5, new_portfolios=10, new_share=0.01, legacy=legacy)
    big_csv = big.write_csv(tmp_path / "202411_规模明细_big.csv")
    proc = start(tmp_path, "process_facts", "--domain", "annuity_performance", str(big_csv))
    try:
        killed = wait_for(lambda: FactBatch.objects.filter(status=FactStatus.RUNNING).first(), "the batch record", proc)
        time.sleep(delay)
        assert proc.poll() is None, "the load finished before it could be killed"
        kill(proc, killed)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed.refresh_from_db()
    assert killed.status == FactStatus.RUNNING  # nobody recorded an outcome

    small = write_csv(tmp_path / "202412_规模明细.csv", [scale_row(月度="202412"), scale_row(月度="202412")])
    result = process_fact_file(domain="annuity_performance", path=small)

    killed.refresh_from_db()
    assert killed.status == FactStatus.ABANDONED and killed.finished_at is not None
    assert killed.get_status_display() == "已中断"
    assert "abandoned" in killed.message and "nothing of it was loaded" in killed.message
    assert result.batch.status == FactStatus.LOADED
    assert ScaleFact.objects.count() == 2  # nothing of the killed load arrived
    alert = Alert.objects.get(key=f"batch_rejected:annuity_performance:{big_csv.name}")
    assert f"#{killed.pk}" in alert.subject and "已中断" in alert.subject

    rerun = process_fact_file(domain="annuity_performance", path=big_csv)
    assert rerun.batch.status == FactStatus.LOADED and rerun.batch.rows_loaded == 200_000


def slow_down(legacy, seconds_per_row: float) -> None:
    legacy.execute(legacy.enterprise, "RENAME TABLE `组织架构` TO `组织架构_data`")
    legacy.execute(
        legacy.enterprise, f"CREATE VIEW `组织架构` AS SELECT * FROM `组织架构_data` WHERE SLEEP({seconds_per_row}) = 0"
    )


def restore(legacy) -> None:
    for (pid,) in legacy.fetch(
        legacy.enterprise,
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
        [legacy.enterprise],
    ):
        legacy.execute(legacy.enterprise, f"KILL {int(pid)}")
    legacy.execute(legacy.enterprise, "DROP VIEW `组织架构`")
    legacy.execute(legacy.enterprise, "RENAME TABLE `组织架构_data` TO `组织架构`")


@pytest.mark.django_db(transaction=True)
def test_a_preload_killed_midway_is_closed_as_abandoned_by_the_next_preload(legacy, config_dir, tmp_path):
    legacy.load(SMALL)
    slow_down(legacy, 0.25)
    proc = start(tmp_path, "preload")
    try:
        killed = wait_for(lambda: SyncRun.objects.filter(status=RunStatus.RUNNING).first(), "the run record", proc)
        wait_for(lambda: killed.tables.filter(table="年金计划").exists(), "年金计划 to be synced", proc)
        kill(proc, killed)
    finally:
        if proc.poll() is None:
            proc.kill()
        restore(legacy)
    killed.refresh_from_db()
    assert killed.status == RunStatus.RUNNING

    result = run_preload()

    killed.refresh_from_db()
    assert killed.status == RunStatus.ABANDONED and killed.finished_at is not None
    assert "abandoned" in killed.message and "the tables with a result below were synced" in killed.message
    assert result.run.status == RunStatus.SUCCESS, result.run.message
    alert = Alert.objects.get(key="preload_failed", subject__contains=f"#{killed.pk}")
    assert "已中断" in alert.subject and alert.resolved_at is not None  # the successful run cleared it


@pytest.mark.django_db
def test_a_run_whose_owner_is_alive_is_never_closed():
    run = SyncRun.objects.create()
    batch = FactBatch.objects.create(
        domain="annuity_performance", file_name="a.csv", file_path="/in/a.csv", checksum="0" * 64
    )
    db = connection.settings_dict
    other = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [lock_namespace(SyncRun), run.pk])
        other.execute("SELECT pg_advisory_lock(%s, %s)", [lock_namespace(FactBatch), batch.pk])

        closed = close_abandoned_runs()

        assert (closed.preload_runs, closed.fact_batches) == ([], [])
        run.refresh_from_db()
        batch.refresh_from_db()
        assert (run.status, batch.status) == (RunStatus.RUNNING, FactStatus.RUNNING)
    finally:
        other.close()
    wait_for(lambda: not is_alive(run) and not is_alive(batch), "the other session to end")

    closed = close_abandoned_runs()

    assert (closed.preload_runs, closed.fact_batches) == ([run.pk], [batch.pk])
    run.refresh_from_db()
    assert run.status == RunStatus.ABANDONED


@pytest.mark.django_db
def test_the_closer_leaves_its_own_running_record_alone_and_the_alert_task_closes_the_others(config_dir):
    dead = SyncRun.objects.create()
    with running_record(SyncRun, trigger="test") as live:
        summary = async_task("operations.tasks.check_alerts_task")
        live.refresh_from_db()
        dead.refresh_from_db()
        assert live.status == RunStatus.RUNNING
        assert dead.status == RunStatus.ABANDONED
    task = Task.objects.get(id=summary)
    assert task.success and task.result["abandoned_preload_runs"] == [dead.pk]


@pytest.mark.django_db
def test_an_unexpected_error_ends_the_run_failed_not_running(legacy, config_dir, monkeypatch):
    legacy.load(SMALL)

    def explode(self, **kwargs):
        raise KeyError("a programming error")

    monkeypatch.setattr(ReferenceSyncService, "sync_table", explode)
    with pytest.raises(KeyError):
        run_preload(tables=["年金计划"])

    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.message == "unexpected error: KeyError: 'a programming error'"


# Module constants, not locals: a debug page shows the test's own source lines and local variables.
DEBUG_PAGE_PASSWORDS = ("LegacyPw-123", "RedisPw-456", "WebhookTok-789", "DbPw-000")
DEBUG_PAGE_SECRETS = {
    "LEGACY_MYSQL_URL": f"mysql://reader:{DEBUG_PAGE_PASSWORDS[0]}@db.internal:3306",
    "REFGOV_Q_REDIS_URL": f"redis://:{DEBUG_PAGE_PASSWORDS[1]}@queue.internal:6379/0",
    "REFGOV_NOTIFY_WEBHOOK_URL": f"https://hooks.example.invalid/robot/{DEBUG_PAGE_PASSWORDS[2]}",
}
DEBUG_PAGE_DATABASE_URL = f"postgres://refgov:{DEBUG_PAGE_PASSWORDS[3]}@pg.internal/refgov"
# An unencoded "#" ends the URL's authority early: the password's first part lands where the port belongs.
PASSWORD = "Tr0ub4dor#3xyz"
MALFORMED = f"mysql://legacy_reader:{PASSWORD}@db.internal:3306"


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for part in (PASSWORD, "Tr0ub4dor", "3xyz"):
            assert part not in text, text


@pytest.mark.django_db
def test_a_malformed_legacy_url_fails_the_run_naming_the_variable_never_the_password(
    legacy, config_dir, settings, logs
):
    settings.LEGACY_MYSQL_URL = MALFORMED

    try:
        preload_task("manual")
    except Exception as exc:  # what a django-q2 worker records as the task's failure (django_q.worker)
        failure = f"{exc} : {traceback.format_exc()}"
    else:
        pytest.fail("the preload task did not fail")

    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.message.startswith("LEGACY_MYSQL_URL is malformed")
    assert "LEGACY_MYSQL_URL is malformed" in failure
    alert = Alert.objects.get(key="preload_failed", resolved_at__isnull=True)
    assert_no_password(run.message, failure, logs.text, alert.subject, alert.text)

    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("preload", stderr=stderr, stdout=io.StringIO())
    assert exit_info.value.code == 1
    assert "preload failed: LEGACY_MYSQL_URL is malformed" in stderr.getvalue()
    assert_no_password(stderr.getvalue(), logs.text)
    assert "preload run" in logs.text  # the logs were captured
    assert SyncRun.objects.filter(status=RunStatus.RUNNING).count() == 0


@pytest.mark.parametrize(
    "url",
    [
        MALFORMED,
        "mysql://user:pa:ss@host:notaport",
        "mysql://u:Tr0ub4dor/3xyz@h:3306",
        f"http://u:{PASSWORD}@h:3306",
        "mysql://u:Tr0ub4dor3xyz@h:99999",
    ],
)
def test_url_parse_errors_never_echo_the_url(url):
    """Neither in the message nor in an exception chained to it (which a traceback would show)."""
    with pytest.raises(SourceError) as error:
        MySQLServer.from_url(url)
    assert "LEGACY_MYSQL_URL" in str(error.value)
    assert error.value.__cause__ is None and (error.value.__context__ is None or error.value.__suppress_context__)
    assert_no_password(str(error.value))
    assert "pa:ss" not in str(error.value)


def test_the_legacy_server_never_shows_its_password():
    server = MySQLServer.from_url("mysql://reader:S3cret-Legacy-Pw@db.internal:3307")
    assert server.password == "S3cret-Legacy-Pw"
    reader = LegacyTableReader(server=server, database="annuity_hub", table="年金计划")
    assert "S3cret" not in repr(server) and "S3cret" not in str(server) and "S3cret" not in repr(reader)
    assert "db.internal:3307" in str(server)


def test_a_failing_webhook_never_logs_its_url(settings, logs):
    settings.REFGOV_NOTIFIERS = ["webhook"]
    settings.REFGOV_NOTIFY_WEBHOOK_URL = "hooks.example.invalid/robot/send?access_token=Tok3nS3cr3tValue"

    notify(channel="data-quality", subject="测试", text="x")

    assert "notifier webhook failed" in logs.text
    assert "Tok3nS3cr3tValue" not in logs.text and "hooks.example.invalid" not in logs.text


def test_log_handlers_mask_the_secrets_of_the_environment(settings):
    settings.LEGACY_MYSQL_URL = "mysql://reader:Handler-Pw-42@db.internal:3306"
    handler = next(h for h in logging.getLogger("refgov").handlers if isinstance(h, logging.StreamHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        try:
            raise RuntimeError("could not connect with Handler-Pw-42")
        except RuntimeError:
            logging.getLogger("refgov.test").exception("connecting to %s failed", settings.LEGACY_MYSQL_URL)
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    assert "connecting to mysql://reader:***@db.internal:3306 failed" in output
    assert "RuntimeError: could not connect with ***" in output
    assert "Handler-Pw-42" not in output


def test_debug_pages_and_error_mails_hide_connection_urls_and_the_webhook(settings, rf):
    for name in DEBUG_PAGE_SECRETS:
        setattr(settings, name, DEBUG_PAGE_SECRETS[name])
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": settings.REFGOV_Q_REDIS_URL}
    request = rf.get("/admin/", DATABASE_URL=DEBUG_PAGE_DATABASE_URL, **DEBUG_PAGE_SECRETS)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()

    assert "LEGACY_MYSQL_URL" in html and "boom" in text
    for password in DEBUG_PAGE_PASSWORDS:
        assert password not in html and password not in text, password
