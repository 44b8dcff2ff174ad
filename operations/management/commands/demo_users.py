from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from operations.management.base import Failed, RefgovCommand
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP, ensure_groups

DEMO_USERS = {"steward": STEWARD_GROUP, "viewer": VIEWER_GROUP}


class Command(RefgovCommand):
    help = "Create the demo logins steward (数据管理员) and viewer (只读用户); development settings only."

    def run(self, **options: Any) -> dict:
        if not settings.DEBUG:
            raise Failed("demo users are for the development settings only (DEBUG is off)")
        password = os.environ.get("REFGOV_DEMO_PASSWORD", "refgov-demo")
        ensure_groups()
        users = []
        for username, group in DEMO_USERS.items():
            user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=group)])
            users.append({"username": username, "group": group})
        return {
            "users": users,
            "password_from": "REFGOV_DEMO_PASSWORD" if "REFGOV_DEMO_PASSWORD" in os.environ else "default",
        }

    def emit_text(self, payload: dict) -> None:
        password = os.environ.get("REFGOV_DEMO_PASSWORD", "refgov-demo")
        for user in payload["users"]:
            self.stdout.write(f"demo login {user['username']} / {password} ({user['group']})")
