"""The audit trail, read-only for everyone (superusers too); old entries go by retention only.

Every entry reads as a title naming who acted ("Sent by Dana", "Sent by schedule"), links to
what it was about (campaign, send, import, recipient), and shows its details as a small table
("Status: running → paused"), never as the stored JSON.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.admin.base import EstimatedCountPaginator, ReadOnlyAdminMixin
from campaigns.models import AuditEntry
from campaigns.selectors.audit import audit_actor, audit_details, audit_summary, audit_title
from campaigns.selectors.zoned import zoned


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ("title", "when", "about", "summary")
    list_display_links = ("title",)
    list_filter = ("action", "created_at")
    list_select_related = ("actor", "campaign", "send", "import_job", "recipient")
    search_fields = ("campaign__name", "=actor__username")
    search_help_text = "A campaign name, or the exact username of who acted."
    fields = ("title", "when", "who", "about", "details")
    readonly_fields = fields
    # Nothing to select: no bulk action applies to a record nobody may change.
    actions = None
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        queryset: QuerySet[AuditEntry] = super().get_queryset(request)
        return queryset.select_related(*self.list_select_related)

    @display(description="What happened")
    def title(self, obj: AuditEntry) -> str:
        return audit_title(obj)

    @display(description="When", ordering="created_at")
    def when(self, obj: AuditEntry) -> str:
        return zoned(obj.created_at)

    @display(description="Who")
    def who(self, obj: AuditEntry) -> str:
        return audit_actor(obj)

    @display(description="About")
    def about(self, obj: AuditEntry) -> SafeString | str:
        return entry_links(obj) or "—"

    @display(description="Details")
    def summary(self, obj: AuditEntry) -> str:
        return audit_summary(obj) or "—"

    @display(description="Details")
    def details(self, obj: AuditEntry) -> SafeString | str:
        rows = audit_details(obj)
        if not rows:
            return "No further details."
        body = format_html_join(
            "",
            '<tr><th class="pr-4 py-1 text-left font-medium align-top">{}</th>'
            '<td class="py-1 whitespace-pre-wrap">{}</td></tr>',
            ((row.label, _linked(row.value, row.url)) for row in rows),
        )
        return format_html('<table class="audit-details text-sm">{}</table>', body)


def _linked(text: str, url: str) -> SafeString | str:
    if not url:
        return text
    return format_html('<a href="{}" class="text-primary-600">{}</a>', url, text)


_BREAK = mark_safe("<br>")


def entry_links(entry: AuditEntry) -> SafeString:
    """Links to what the entry is about, by name: the campaign, its send, the import, the
    person. An object deleted since leaves its name in the details, not a link."""
    links: list[tuple[str, str, str]] = []
    if entry.campaign_id is not None and entry.campaign is not None:
        links.append(("Campaign", _change_url(entry.campaign), f"“{entry.campaign.name}”"))
    if entry.send_id is not None:
        links.append(("Send", _change_url(entry.send), f"#{entry.send_id}"))
    if entry.import_job_id is not None and entry.import_job is not None:
        name = entry.import_job.original_name or f"#{entry.import_job_id}"
        links.append(("Import", _change_url(entry.import_job), name))
    if entry.recipient_id is not None and entry.recipient is not None:
        links.append(("Recipient", _change_url(entry.recipient), entry.recipient.email))
    line = '{} <a href="{}" class="text-primary-600">{}</a>'
    return format_html_join(_BREAK, line, links)


def _change_url(obj: Any) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
