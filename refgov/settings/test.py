"""Test settings: real PostgreSQL and MariaDB; the database names must look like test databases."""

import os

from .base import *  # noqa: F401,F403
from .base import DATABASES, Q_CLUSTER

SECRET_KEY = "test-only-key"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("REFGOV_TEST_DATABASE", "test_refgov")}
DATABASES["default"]["CONN_MAX_AGE"] = 0
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
LANGUAGE_CODE = "zh-hans"
REFGOV_INBOX_SETTLE_SECONDS = 0  # tests write files and process them at once
