"""Bounce mail the receiver could not read: shown whole, for a person to read and dismiss."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from campaigns.admin.base import (
    POST_ACTION,
    ChangelistDefer,
    EstimatedCountPaginator,
    ReadOnlyAdminMixin,
    label_html,
    post_required,
)
from campaigns.models import BounceMessage
from campaigns.selectors.zoned import zoned
from campaigns.services.bounce_review import bounce_message_dismiss

DISMISS_PERMISSION = "campaigns.change_bouncemessage"
# A bounce is a few kilobytes; a message with a huge attachment is cut here for the page.
RAW_SHOWN_BYTES = 256 * 1024
ALL = "all"
STATUS_TYPES = {"needs_review": "warning", "parsed": "success", "dismissed": "info"}


class ReviewStatusFilter(admin.SimpleListFilter):
    """Opens on the messages that need a person; "All" and the other statuses are a click."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        statuses = [(str(value), str(label)) for value, label in BounceMessage.Status.choices]
        return [*statuses, (ALL, "All")]

    def _chosen(self) -> str:
        return str(self.value() or BounceMessage.Status.NEEDS_REVIEW)

    def choices(self, changelist: Any) -> Iterator[Any]:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self._chosen() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        chosen = self._chosen()
        return queryset if chosen == ALL else queryset.filter(status=chosen)


def raw_text(message: BounceMessage) -> str:
    """The stored bytes as text: undecodable bytes become U+FFFD, never an error."""
    raw = bytes(message.raw or b"")
    text = raw[:RAW_SHOWN_BYTES].decode("utf-8", errors="replace")
    if len(raw) > RAW_SHOWN_BYTES:
        text += f"\n\n[… {len(raw) - RAW_SHOWN_BYTES} more bytes not shown]"
    return text


@admin.register(BounceMessage)
class BounceMessageAdmin(ReadOnlyAdminMixin, ChangelistDefer, ModelAdmin):
    list_display = ("subject_text", "mail_from", "rcpt_to", "when", "status_label", "problem")
    list_filter = (ReviewStatusFilter,)
    search_fields = ("=rcpt_to",)
    search_help_text = "The exact address the bounce was sent to."
    changelist_defer = ("raw",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["dismiss_selected"]
    actions_detail = ["dismiss"]
    fields = (
        "subject_text",
        "status_badge",
        "when",
        "mail_from",
        "rcpt_to",
        "problem",
        "events_found",
        "raw_message",
    )
    readonly_fields = fields

    @display(description="Subject")
    def subject_text(self, obj: BounceMessage) -> str:
        return obj.subject or "(no subject)"

    @display(description="Received", ordering="received_at")
    def when(self, obj: BounceMessage) -> str:
        return zoned(obj.received_at)

    @display(description="Status", label=STATUS_TYPES)
    def status_label(self, obj: BounceMessage) -> tuple[str, str]:
        return obj.status, str(obj.get_status_display())

    @display(description="Status")
    def status_badge(self, obj: BounceMessage) -> str:
        # The change page draws read-only fields as text, not as the list's label: drawn here.
        return label_html(str(obj.get_status_display()), STATUS_TYPES.get(obj.status, ""))

    @display(description="The message as received")
    def raw_message(self, obj: BounceMessage) -> str:
        # format_html escapes the text: a bounce quotes HTML and scripts from anyone.
        return format_html(
            '<pre class="opsdash-raw" id="bounce-raw" style="white-space: pre-wrap; '
            'max-height: 40rem; overflow: auto">{}</pre>',
            raw_text(obj),
        )

    @action(description="Dismiss", icon="done", permissions=["dismiss"], attrs=POST_ACTION)
    def dismiss(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        if refused := post_required(request):
            return refused
        moved = bounce_message_dismiss(message_ids=[int(object_id)], by=request.user)
        if moved:
            messages.success(request, "Dismissed: the message no longer needs review.")
        else:
            messages.info(request, "This message did not need review: nothing changed.")
        return HttpResponseRedirect(reverse("admin:campaigns_bouncemessage_changelist"))

    @action(description="Dismiss the selected messages", permissions=["dismiss"])
    def dismiss_selected(
        self, request: HttpRequest, queryset: QuerySet[BounceMessage]
    ) -> HttpResponse | None:
        ids = list(queryset.values_list("pk", flat=True))
        moved = bounce_message_dismiss(message_ids=ids, by=request.user)
        messages.success(request, f"Dismissed {moved} message{'s' if moved != 1 else ''}.")
        return None

    def has_dismiss_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return bool(request.user.has_perm(DISMISS_PERMISSION))
