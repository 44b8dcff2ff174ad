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
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=environment, capture_output=True, text=True
    )


def test_check_deploy_is_clean_with_production_settings():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="x" * 20 + "production-secret-from-env-0123456789",
    )
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


PRODUCTION_KEY = "x" * 20 + "production-secret-from-env-0123456789"
# A view that fails, served by Django's test client inside a process running the production settings.
RAISE_500 = """
import sys, types
from django.core import mail
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
from django.urls import path

def boom(request):
    raise RuntimeError("boom-in-production")

module = types.ModuleType("refgov_boom_urls")
module.urlpatterns = [path("boom/", boom)]
sys.modules["refgov_boom_urls"] = module
setup_test_environment()
with override_settings(ROOT_URLCONF="refgov_boom_urls"):
    response = Client(raise_request_exception=False).get("/boom/", secure=True)
print("STATUS", response.status_code)
print("MAIL", [(m.to, m.subject) for m in mail.outbox])
"""


def test_a_500_in_production_is_logged_to_stderr_and_mailed_to_the_admins():
    result = run_manage(
        "shell",
        "-c",
        RAISE_500,
        DJANGO_SECRET_KEY=PRODUCTION_KEY,
        DJANGO_ADMINS="运维值班 <ops@example.com>, dba@example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "STATUS 500" in result.stdout
    assert "ERROR django.request: Internal Server Error: /boom/" in result.stderr
    assert "RuntimeError: boom-in-production" in result.stderr  # with its traceback
    assert (
        "MAIL [(['ops@example.com', 'dba@example.com'], '[Django] ERROR (EXTERNAL IP): Internal Server Error: /boom/')]"
        in result.stdout
    )


def test_a_500_without_admins_is_still_logged():
    result = run_manage("shell", "-c", RAISE_500, DJANGO_SECRET_KEY=PRODUCTION_KEY)
    assert "STATUS 500" in result.stdout and "MAIL []" in result.stdout
    assert "Internal Server Error: /boom/" in result.stderr


def test_malformed_admins_refuse_to_start():
    result = run_manage("check", DJANGO_SECRET_KEY=PRODUCTION_KEY, DJANGO_ADMINS="nobody")
    assert result.returncode != 0 and "DJANGO_ADMINS must list e-mail addresses" in result.stderr


def production_setting(name: str, **env: str):
    code = (
        "import json; from django.conf import settings; "
        f"print('VALUE=' + json.dumps(getattr(settings, {name!r}, None)))"
    )
    result = run_manage("shell", "-c", code, DJANGO_SECRET_KEY=PRODUCTION_KEY, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(
        next(line for line in result.stdout.splitlines() if line.startswith("VALUE=")).removeprefix("VALUE=")
    )


def test_the_proxy_ssl_header_is_trusted_only_when_the_environment_opts_in():
    assert production_setting("SECURE_PROXY_SSL_HEADER") is None
    assert production_setting("SECURE_PROXY_SSL_HEADER", DJANGO_SECURE_PROXY_SSL_HEADER="0") is None
    assert production_setting("SECURE_PROXY_SSL_HEADER", DJANGO_SECURE_PROXY_SSL_HEADER="1") == [
        "HTTP_X_FORWARDED_PROTO",
        "https",
    ]


def test_check_deploy_stays_clean_behind_a_proxy_with_admins():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=PRODUCTION_KEY,
        DJANGO_SECURE_PROXY_SSL_HEADER="1",
        DJANGO_ADMINS="Ops <ops@example.com>",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_weak_passwords_are_rejected():
    import pytest
    from django.contrib.auth.models import User
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    assert len(production_setting("AUTH_PASSWORD_VALIDATORS")) == 4
    user = User(username="zhangsan", email="zhangsan@example.com")
    for weak in ("abc12", "12345678901", "password123", "zhangsan2024"):
        with pytest.raises(ValidationError):
            validate_password(weak, user)
    validate_password("蓝色-仓库-Orbit-4471", user)
