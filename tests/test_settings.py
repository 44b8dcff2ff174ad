"""Production settings: secrets only from the environment, and Django's deployment checks clean."""

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
