"""Import jobs for large CSV files (run by a worker on the imports queue)."""

from __future__ import annotations

from django.contrib import admin
from unfold.admin import ModelAdmin

from campaigns.models import ImportJob


@admin.register(ImportJob)
class ImportJobAdmin(ModelAdmin):
    list_display = ("id", "original_name", "audience", "status", "processed_rows", "created_at")
    list_filter = ("status",)
    readonly_fields = (
        "status",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "skipped_count",
        "invalid_count",
        "error_report",
        "message",
        "task_id",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
