"""Production settings: secrets only from the environment, and Django's deployment checks clean."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="refgov.settings.production", **env)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=environment, capture_output=True, text=True)


def test_check_deploy_is_clean_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY="x" * 20 + "production-secret-from-env-0123456789")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check")
    assert result.returncode != 0
    assert "environment variable DJANGO_SECRET_KEY is required" in result.stderr


def q_cluster(**env: str) -> dict:
    code = "import json; from django.conf import settings; print('Q_CLUSTER=' + json.dumps(settings.Q_CLUSTER))"
    result = run_manage("shell", "-c", code, DJANGO_SECRET_KEY="x" * 50, **env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("Q_CLUSTER="))
    return json.loads(line.removeprefix("Q_CLUSTER="))


def test_q_cluster_is_safe_by_default_and_redis_by_environment():
    conf = q_cluster(REFGOV_Q_REDIS_URL="")
    assert conf["orm"] == "default" and "redis" not in conf
    assert conf["retry"] > conf["timeout"]  # a long preload is never handed to a second worker while it runs
    assert conf["catch_up"] is False and 1 <= conf["max_attempts"] <= 3
    redis = q_cluster(REFGOV_Q_REDIS_URL="redis://:secret@queue.internal:6379/2")
    assert "orm" not in redis and redis["redis"] == "redis://:secret@queue.internal:6379/2"
