"""A real ``manage.py qcluster`` process (ORM broker, and Redis when REFGOV_Q_REDIS_URL is set) picks up a queued
preload and finishes it against the test databases."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django_q.conf import Conf
from django_q.models import Task
from django_q.tasks import async_task

from pipeline.demo.legacy import LegacyDataset
from pipeline.models import SyncRun
from reference.models import AnnuityPlan, PortfolioPlan

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make system-deps installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def start_cluster(config_dir, settings, tmp_path, **extra_env) -> tuple[subprocess.Popen, Path]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REFGOV_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="refgov.settings.dev",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,  # tasks are signed: the cluster must share the key
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        LEGACY_MYSQL_URL=settings.LEGACY_MYSQL_URL,
        REFGOV_CONFIG_DIR=str(config_dir),
        REFGOV_INBOX_DIR=str(tmp_path / "inbox"),
        REFGOV_REPORTS_DIR=str(tmp_path / "reports"),
        **extra_env,
    )
    log = tmp_path / "qcluster.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def wait_for_task(task_id: str, proc: subprocess.Popen, log: Path) -> Task:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (task := Task.objects.filter(id=task_id).first()) is not None:
            return task
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"qcluster did not finish task {task_id}:\n{log.read_text(encoding='utf-8')[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the cluster's own graceful stop; it ends its workers itself
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def check_preload_finished(task: Task, log: Path) -> None:
    assert task.success, f"{task.result}\n{log.read_text(encoding='utf-8')[-3000:]}"
    run = SyncRun.objects.get()
    assert (run.trigger, run.status) == ("schedule", "success")
    assert task.result["run_id"] == run.pk
    assert (AnnuityPlan.objects.count(), PortfolioPlan.objects.count()) == (10, 12)


def test_a_real_qcluster_runs_a_queued_preload(legacy, config_dir, settings, tmp_path):
    legacy.load(LegacyDataset(plans=10, portfolios=12))
    proc, log = start_cluster(config_dir, settings, tmp_path)
    try:
        task_id = async_task("operations.tasks.preload_task", task_name="real-cluster-preload", sync=False)
        task = wait_for_task(task_id, proc, log)
    finally:
        stop(proc)
    check_preload_finished(task, log)


def test_a_real_qcluster_on_redis(legacy, config_dir, settings, tmp_path, redis_url, monkeypatch):
    from django_q.brokers.redis_broker import Redis

    legacy.load(LegacyDataset(plans=10, portfolios=12))
    proc, log = start_cluster(config_dir, settings, tmp_path, REFGOV_Q_REDIS_URL=redis_url)
    try:
        monkeypatch.setattr(Conf, "REDIS", redis_url)
        broker = Redis(list_key=Conf.CLUSTER_NAME)
        task_id = async_task("operations.tasks.preload_task", task_name="redis-preload", sync=False, broker=broker)
        task = wait_for_task(task_id, proc, log)
    finally:
        stop(proc)
    check_preload_finished(task, log)
