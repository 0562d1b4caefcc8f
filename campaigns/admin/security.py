"""Login lockouts (django-axes), for superusers only.

django-axes counts failed logins in the database; its own admin is switched off
(AXES_ENABLE_ADMIN) and re-registered here under Unfold. Only superusers see these pages,
whatever permissions a group grants: they show who is being guessed at and from where.
Deleting an attempt lifts its lock; the failure log is history and stays read-only.
"""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.admin import AccessFailureLogAdmin as AxesAccessFailureLogAdmin
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin


def is_superuser(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


class SuperuserOnlyAdminMixin:
    """Seen by superusers only; nobody adds or edits rows, which django-axes writes."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccessAttempt)
class AccessAttemptAdmin(SuperuserOnlyAdminMixin, AxesAccessAttemptAdmin, ModelAdmin):
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)  # deleting an attempt lifts the lock


@admin.register(AccessFailureLog)
class AccessFailureLogAdmin(SuperuserOnlyAdminMixin, AxesAccessFailureLogAdmin, ModelAdmin):
    pass
