"""Pluggable notifiers: ``notify()`` sends through every notifier named in settings.REFGOV_NOTIFIERS, never raises."""

from __future__ import annotations

import json
import logging
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from refgov.redact import redact

logger = logging.getLogger("refgov.notify")
WEBHOOK_TIMEOUT = 10


class LogNotifier:
    def send(self, *, channel: str, subject: str, text: str, data: dict) -> None:
        body = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        logger.warning("[%s] %s: %s", channel, subject, body)


class EmailNotifier:
    def send(self, *, channel: str, subject: str, text: str, data: dict) -> None:
        recipients = list(getattr(settings, "REFGOV_NOTIFY_EMAILS", []) or [])
        if not recipients:
            raise ValueError("REFGOV_NOTIFY_EMAILS is empty")
        send_mail(f"[refgov] {subject}", f"{text}\n\n(channel: {channel})", None, recipients, fail_silently=False)


class WebhookNotifier:
    def send(self, *, channel: str, subject: str, text: str, data: dict) -> None:
        url = getattr(settings, "REFGOV_NOTIFY_WEBHOOK_URL", "")
        if not url:
            raise ValueError("REFGOV_NOTIFY_WEBHOOK_URL is not set")
        body = json.dumps(
            {"channel": channel, "subject": subject, "text": text, "data": data}, ensure_ascii=False, default=str
        ).encode("utf-8")
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read()


NOTIFIERS: dict[str, type[LogNotifier | EmailNotifier | WebhookNotifier]] = {
    "log": LogNotifier,
    "email": EmailNotifier,
    "webhook": WebhookNotifier,
}


def notify(*, channel: str, subject: str, text: str, data: dict | None = None) -> None:
    """Send through every configured notifier; a failing (or unknown) notifier is logged, never raised."""
    for name in getattr(settings, "REFGOV_NOTIFIERS", ["log"]) or []:
        try:
            cls = NOTIFIERS.get(name)
            if cls is None:
                raise ValueError(f"unknown notifier {name!r} (known: {', '.join(NOTIFIERS)})")
            cls().send(channel=channel, subject=subject, text=text, data=data or {})
        except Exception as exc:  # noqa: BLE001 — a notification must never break the caller
            # urllib names the URL in some errors ("unknown url type: '...'"): the webhook URL is the credential.
            logger.error("notifier %s failed: %s: %s", name, type(exc).__name__, redact(str(exc)))
