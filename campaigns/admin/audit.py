"""The audit trail, read-only for everyone."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.admin.base import EstimatedCountPaginator, ReadOnlyAdminMixin, id_link
from campaigns.models import AuditEntry, Send


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = (
        "created_at",
        "actor",
        "action",
        "campaign",
        "send_link",
        "import_job",
        "summary",
    )
    list_filter = ("action", "created_at")
    list_select_related = ("actor", "campaign", "import_job")
    search_fields = ("campaign__name", "=actor__username")
    search_help_text = "A campaign name, or the exact username of who acted."
    readonly_fields = (
        "created_at",
        "actor",
        "action",
        "campaign",
        "send",
        "import_job",
        "changes_pretty",
    )
    exclude = ("changes",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    @display(description="Send")
    def send_link(self, obj: AuditEntry) -> str:
        return id_link(Send, obj.send_id, "Send")

    @display(description="Changes")
    def summary(self, obj: AuditEntry) -> str:
        if not obj.changes:
            return "—"
        return ", ".join(sorted(obj.changes))[:120]

    @display(description="Changes")
    def changes_pretty(self, obj: AuditEntry) -> str:
        return format_html(
            '<pre class="text-sm whitespace-pre-wrap">{}</pre>',
            json.dumps(obj.changes, indent=2, ensure_ascii=False, default=str),
        )
