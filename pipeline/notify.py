"""Pluggable notifiers: ``notify()`` sends through every notifier named in settings.REFGOV_NOTIFIERS, never raises."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMessage

from refgov.redact import redact

logger = logging.getLogger("refgov.notify")
WEBHOOK_TIMEOUT = 10


@dataclass(frozen=True)
class Attachment:
    """A file sent with a notification: attached to the e-mail; the webhook and the log name it (and its link)."""

    path: Path
    mimetype: str
    url: str | None = None  # where people can fetch it (``REFGOV_REPORTS_URL``), if it is served

    def describe(self) -> dict[str, str | None]:
        return {"name": self.path.name, "path": str(self.path), "url": self.url}


class LogNotifier:
    def send(
        self, *, channel: str, subject: str, text: str, data: dict, attachments: Sequence[Attachment] = ()
    ) -> None:
        body = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        if attachments:
            body += " | attached: " + ", ".join(a.url or str(a.path) for a in attachments)
        logger.warning("[%s] %s: %s", channel, subject, body)


class EmailNotifier:
    def send(
        self, *, channel: str, subject: str, text: str, data: dict, attachments: Sequence[Attachment] = ()
    ) -> None:
        recipients = list(getattr(settings, "REFGOV_NOTIFY_EMAILS", []) or [])
        if not recipients:
            raise ValueError("REFGOV_NOTIFY_EMAILS is empty")
        message = EmailMessage(f"[refgov] {subject}", f"{text}\n\n(channel: {channel})", None, recipients)
        for attachment in attachments:
            message.attach(attachment.path.name, attachment.path.read_bytes(), attachment.mimetype)
        message.send(fail_silently=False)


class WebhookNotifier:
    def send(
        self, *, channel: str, subject: str, text: str, data: dict, attachments: Sequence[Attachment] = ()
    ) -> None:
        url = getattr(settings, "REFGOV_NOTIFY_WEBHOOK_URL", "")
        if not url:
            raise ValueError("REFGOV_NOTIFY_WEBHOOK_URL is not set")
        payload = {"channel": channel, "subject": subject, "text": text, "data": data}
        if attachments:
            payload["attachments"] = [a.describe() for a in attachments]
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
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


def notify(
    *, channel: str, subject: str, text: str, data: dict | None = None, attachments: Sequence[Attachment] = ()
) -> None:
    """Send through every configured notifier; a failing (or unknown) notifier is logged, never raised."""
    for name in getattr(settings, "REFGOV_NOTIFIERS", ["log"]) or []:
        try:
            cls = NOTIFIERS.get(name)
            if cls is None:
                raise ValueError(f"unknown notifier {name!r} (known: {', '.join(NOTIFIERS)})")
            cls().send(channel=channel, subject=subject, text=text, data=data or {}, attachments=attachments)
        except Exception as exc:  # noqa: BLE001 — a notification must never break the caller
            # urllib names the URL in some errors ("unknown url type: '...'"): the webhook URL is the credential.
            logger.error("notifier %s failed: %s: %s", name, type(exc).__name__, redact(str(exc)))
