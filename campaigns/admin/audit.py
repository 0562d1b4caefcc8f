"""The audit trail, read-only for everyone.

Most entries list the fields they changed; an interruption of delivery and its recovery read as
a sentence ("Delivery interrupted: Redis unavailable", "Delivery recovered after 12 s (Redis)").
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.admin.base import EstimatedCountPaginator, ReadOnlyAdminMixin, id_link
from campaigns.models import AuditEntry, Send
from campaigns.selectors.health import service_label


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
        "summary",
        "changes_pretty",
    )
    exclude = ("changes",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    @display(description="Send")
    def send_link(self, obj: AuditEntry) -> str:
        return id_link(Send, obj.send_id, "Send")

    @display(description="What happened")
    def summary(self, obj: AuditEntry) -> str:
        if sentence := audit_sentence(obj):
            return sentence
        if not obj.changes:
            return "—"
        return ", ".join(sorted(obj.changes))[:120]

    @display(description="Changes")
    def changes_pretty(self, obj: AuditEntry) -> str:
        return format_html(
            '<pre class="text-sm whitespace-pre-wrap">{}</pre>',
            json.dumps(obj.changes, indent=2, ensure_ascii=False, default=str),
        )


def audit_sentence(entry: AuditEntry) -> str:
    """An interruption or a recovery of delivery in words; "" for every other entry."""
    changes = entry.changes or {}
    service = service_label(str(changes.get("service", "")))
    if entry.action == AuditEntry.Action.INTERRUPTED:
        return f"Delivery interrupted: {service} unavailable"
    if entry.action == AuditEntry.Action.RECOVERED:
        seconds = changes.get("seconds")
        after = f" after {round(float(seconds))} s" if isinstance(seconds, int | float) else ""
        return f"Delivery recovered{after} ({service})"
    return ""
