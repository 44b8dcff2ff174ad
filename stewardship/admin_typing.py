"""What the reference admin's pieces are typed against: the ModelAdmin its mixins are mixed into, and the user of an
admin request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

if TYPE_CHECKING:
    from django import forms
    from django.contrib import admin

    from reference.models import TrackedReference

    ReferenceModelAdmin = admin.ModelAdmin[TrackedReference]
    ReferenceModelForm = forms.ModelForm[TrackedReference]
else:  # a mixin's base for the type checker only
    ReferenceModelAdmin = ReferenceModelForm = object


def request_user(request: HttpRequest) -> User:
    """The logged-in user of an admin request (the admin site lets no anonymous user reach its views)."""
    user = request.user
    if isinstance(user, AnonymousUser):
        raise PermissionDenied
    return user
