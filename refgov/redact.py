"""Secrets of the environment (passwords in connection URLs, the webhook URL) kept out of messages, logs and records.

``redact(text)`` replaces every secret the settings hold by ``***``; ``RedactSecrets`` is the same as a logging
filter (installed on refgov's handlers); ``ReporterFilter`` hides them on Django's debug pages and error e-mails."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

MASK = "***"
# Settings and environment variables whose values are secret (connection URLs carry passwords, the webhook URL is
# itself the credential), besides Django's own list (KEY, SECRET, PASS, TOKEN...).
SECRET_URL_SETTINGS = ("LEGACY_MYSQL_URL", "REFGOV_Q_REDIS_URL", "DATABASE_URL", "REFGOV_NOTIFY_WEBHOOK_URL")
# A webhook URL's path or query shorter than this is no token (``/``, ``/hook``).
MIN_PART = 8


def url_password(url: str) -> str:
    """The password of ``scheme://user:password@host...``, read leniently: also from a URL too malformed to parse."""
    rest = url.split("://", 1)[1] if "://" in url else url
    userinfo, at, _ = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return ""
    return userinfo.split(":", 1)[1]


def _url_secrets(url: str, *, whole: bool) -> set[str]:
    found: set[str] = set()
    if not url:
        return found
    password = url_password(url)
    if password:
        found |= {password, unquote(password)}
    if whole:
        # The webhook URL is the credential: the URL, and its path and query (where the tokens are).
        found.add(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None:
            found |= {part for part in (parts.path, parts.query) if len(part.strip("/")) >= MIN_PART}
    return found


def secret_values() -> tuple[str, ...]:
    """The secret strings of the current settings, longest first (so a URL is masked before its password)."""
    passwords = tuple(str(d.get("PASSWORD") or "") for d in getattr(settings, "DATABASES", {}).values())
    return _secret_values(
        str(getattr(settings, "LEGACY_MYSQL_URL", "") or ""),
        str(getattr(settings, "REFGOV_Q_REDIS_URL", "") or ""),
        str(getattr(settings, "REFGOV_NOTIFY_WEBHOOK_URL", "") or ""),
        passwords,
    )


@lru_cache(maxsize=8)
def _secret_values(legacy: str, redis: str, webhook: str, passwords: tuple[str, ...]) -> tuple[str, ...]:
    found = _url_secrets(legacy, whole=False) | _url_secrets(redis, whole=False) | _url_secrets(webhook, whole=True)
    found |= set(passwords)
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every secret of the settings replaced by ``***``."""
    if not text:
        return text
    for secret in secret_values():
        text = text.replace(secret, MASK)
    return text


class RedactSecrets(logging.Filter):
    """Logging filter: the formatted message and the traceback of a record, secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        except Exception:  # noqa: BLE001 — a log line must never be lost to its filter
            pass
        return True


class ReporterFilter(SafeExceptionReporterFilter):
    """Debug pages and error e-mails: connection URLs, the webhook URL and the Redis broker hidden too (settings,
    request META, which holds the environment under the development server)."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|WEBHOOK|REDIS|DSN|"
        + "|".join(re.escape(name) for name in SECRET_URL_SETTINGS),
        flags=re.I,
    )
