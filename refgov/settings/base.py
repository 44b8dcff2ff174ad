"""Settings shared by every environment. Everything secret or host-specific comes from the environment."""

import os
from email.utils import getaddresses
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"environment variable {name} is required")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = False
ALLOWED_HOSTS = [h for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin.apps.SimpleAdminConfig",  # admin modules load with the URLs (requests), not in every command
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "import_export",
    "pgtrigger",
    "pghistory",
    "reference",
    "pipeline",
    "stewardship",
    "operations",
]

# The spreadsheet round trip: stewards (change permission) import, anyone who may view exports.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "change"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
IMPORT_EXPORT_USE_TRANSACTIONS = True

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "refgov.urls"
WSGI_APPLICATION = "refgov.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]


def database_from_url(url: str) -> dj_database_url.DBConfig:
    config = dj_database_url.parse(url, conn_max_age=60)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres://...)")
    config["OPTIONS"] = {"options": "-c search_path=public,business"}
    return config


DATABASES = {"default": database_from_url(env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/refgov"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# mysql://user:pass@host:port — each preload source names its own database.
LEGACY_MYSQL_URL = env("LEGACY_MYSQL_URL", "mysql://root@127.0.0.1:3306")
# PostgreSQL work_mem / maintenance_work_mem inside a table sync's transaction (hash joins of whole tables).
REFGOV_SYNC_WORK_MEM = env("REFGOV_SYNC_WORK_MEM", "256MB")
# A plain CSV fact file at least this large is copied into PostgreSQL in this many parts, on as many connections
# (PostgreSQL parses each part on its own core).
REFGOV_FACT_COPY_PARTS = int(env("REFGOV_FACT_COPY_PARTS", "2"))
REFGOV_FACT_PARALLEL_MIN_BYTES = int(env("REFGOV_FACT_PARALLEL_MIN_BYTES", str(32 << 20)))
REFGOV_CONFIG_DIR = Path(env("REFGOV_CONFIG_DIR", str(BASE_DIR / "config"))).resolve()
# Notifications (pipeline.notify): notifier names, e-mail recipients, webhook URL.
REFGOV_NOTIFIERS = [n.strip() for n in env("REFGOV_NOTIFIERS", "log").split(",") if n.strip()]
REFGOV_NOTIFY_EMAILS = [a.strip() for a in env("REFGOV_NOTIFY_EMAILS", "").split(",") if a.strip()]
REFGOV_NOTIFY_WEBHOOK_URL = env("REFGOV_NOTIFY_WEBHOOK_URL", "")
# Fact files waiting to be processed by the scheduled fact task (processed/ and rejected/ below it).
REFGOV_INBOX_DIR = Path(env("REFGOV_INBOX_DIR", str(BASE_DIR / "var" / "inbox")))
# A file is processed once two inbox scans at least this far apart saw it unchanged (size, times, inode) and its
# ctime is at least this old; 0 processes a file at first sight (only when every writer renames files into place).
REFGOV_INBOX_SETTLE_SECONDS = int(env("REFGOV_INBOX_SETTLE_SECONDS", "60"))
# Workbooks are checked before they are parsed (zip bombs): a real monthly workbook of 40k + 14k rows is 8 MB
# compressed, 57 MB uncompressed (ratio 7), and parsing a sheet takes about as much memory as its XML. The defaults
# allow ~4x today's volume; keep the same numbers as pipeline.facts.archive.DEFAULT_LIMITS.
REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES = int(env("REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES", str(512 << 20)))  # all parts
REFGOV_XLSX_MAX_MEMBER_BYTES = int(env("REFGOV_XLSX_MAX_MEMBER_BYTES", str(256 << 20)))  # one part (a sheet's XML)
REFGOV_XLSX_MAX_RATIO = int(env("REFGOV_XLSX_MAX_RATIO", "100"))  # uncompressed : compressed, parts above 1 MB
REFGOV_FACT_MAX_ROWS_PER_SHEET = int(env("REFGOV_FACT_MAX_ROWS_PER_SHEET", "500000"))
# Fact files uploaded in the admin (上传事实文件): kept for audit under this directory (one folder per upload), and
# refused above this size (the monthly workbook is ~8 MB; a 1M-row CSV ~250 MB).
REFGOV_UPLOADS_DIR = Path(env("REFGOV_UPLOADS_DIR", str(BASE_DIR / "var" / "uploads")))
REFGOV_UPLOAD_MAX_BYTES = int(env("REFGOV_UPLOAD_MAX_BYTES", str(256 << 20)))
# Review reports written after batches and by ``manage.py review_report``.
REFGOV_REPORTS_DIR = Path(env("REFGOV_REPORTS_DIR", str(BASE_DIR / "var" / "reports")))
# Where REFGOV_REPORTS_DIR is served (a file share's or web server's URL), for the links in notifications; optional.
REFGOV_REPORTS_URL = env("REFGOV_REPORTS_URL", "")

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))

Q_CLUSTER = {
    "name": "refgov",
    "orm": "default",
    "workers": 2,
    "timeout": 3600,
    "retry": 3900,
    "max_attempts": 2,
    "catch_up": False,
    "save_limit": 1000,
    "label": "任务队列",
}
# Workers on several hosts: a Redis broker (redis://[:password@]host:6379/0) instead of the database queue.
REFGOV_Q_REDIS_URL = env("REFGOV_Q_REDIS_URL", "")
if REFGOV_Q_REDIS_URL:
    Q_CLUSTER = {**{k: v for k, v in Q_CLUSTER.items() if k != "orm"}, "redis": REFGOV_Q_REDIS_URL}

# Errors of request handling (500s) and of security checks go to stderr outside DEBUG (under DEBUG Django's own console
# handler prints them) and, through Django's default "django" logger, by e-mail to ADMINS when DJANGO_ADMINS names
# any. Every handler masks the secrets of the environment (refgov.redact).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "refgov.redact.RedactSecrets"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
        "errors": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "level": "ERROR",
            "filters": ["require_debug_false", "redact"],
        },
    },
    "loggers": {
        "refgov": {"handlers": ["console"], "level": env("REFGOV_LOG_LEVEL", "INFO"), "propagate": False},
        "django.request": {"handlers": ["errors"], "level": "ERROR"},
        "django.security": {"handlers": ["errors"], "level": "ERROR"},
    },
}
# Debug pages and error e-mails hide the connection URLs and the webhook URL as well as Django's usual secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "refgov.redact.ReporterFilter"


def admins_from_env(value: str) -> list[tuple[str, str]]:
    """``DJANGO_ADMINS="Name <a@example.com>, b@example.com"`` → [("Name", "a@example.com"), ("", "b@example.com")]."""
    people = [(name, address) for name, address in getaddresses([value]) if "@" in address]
    if value.strip() and not people:
        raise ImproperlyConfigured("DJANGO_ADMINS must list e-mail addresses like 'Name <name@example.com>, ...'")
    return people


# Who gets an e-mail for every 500 (needs the EMAIL_* settings of your mail relay).
ADMINS = admins_from_env(env("DJANGO_ADMINS", ""))
SERVER_EMAIL = env("DJANGO_SERVER_EMAIL", "refgov@localhost")
EMAIL_HOST = env("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("DJANGO_EMAIL_PORT", "25"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
