"""Root fixtures: real PostgreSQL (test_refgov) and real MariaDB (test_* databases), never production names."""

from __future__ import annotations

import shutil
import uuid

import pytest
from django.conf import settings
from django.utils import translation

from tests.legacy import LegacyDB, make_legacy, write_config
from tests.safety import require_test_database


def pytest_configure(config) -> None:
    db = settings.DATABASES["default"]
    require_test_database(db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}", what="PostgreSQL")


@pytest.fixture(autouse=True)
def _refuse_non_test_database(request) -> None:
    if "django_db_setup" in request.fixturenames:
        from django.db import connection

        require_test_database(connection.settings_dict["NAME"], what="PostgreSQL")


@pytest.fixture(autouse=True)
def _reports_in_tmp(settings, tmp_path) -> None:
    """Batch reports and uploaded files of every test go to its own temporary directory, never into the work tree."""
    settings.REFGOV_REPORTS_DIR = tmp_path / "reports"
    settings.REFGOV_UPLOADS_DIR = tmp_path / "uploads"


@pytest.fixture(autouse=True)
def _default_language():
    """A request in English (or a test that activates a language) does not leave it active for the next test."""
    yield
    translation.deactivate()


@pytest.fixture
def legacy() -> LegacyDB:
    db = make_legacy(uuid.uuid4().hex[:8])
    yield db
    db.drop()


@pytest.fixture
def config_copy(tmp_path, settings):
    """A copy of the real config directory, installed as REFGOV_CONFIG_DIR (change it with tests.legacy.edit_config)."""
    directory = tmp_path / "config"
    shutil.copytree(settings.BASE_DIR / "config", directory)
    settings.REFGOV_CONFIG_DIR = directory
    return directory


@pytest.fixture
def config_dir(tmp_path, legacy, settings):
    """Config pointing at the test's legacy databases, installed as REFGOV_CONFIG_DIR."""
    directory = write_config(tmp_path / "config", legacy)
    settings.REFGOV_CONFIG_DIR = directory
    return directory
