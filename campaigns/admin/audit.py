"""The audit trail, read-only for everyone."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin

from campaigns.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ModelAdmin):
    list_display = ("created_at", "actor", "action", "campaign", "send", "import_job")
    list_filter = ("action",)
    list_select_related = ("actor", "campaign", "send", "import_job")
    search_fields = ("campaign__name", "actor__username")
    readonly_fields = ("created_at", "actor", "action", "campaign", "send", "import_job", "changes")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
