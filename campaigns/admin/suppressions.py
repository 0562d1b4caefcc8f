"""The suppression list: addresses opsdash never mails again, and why. Records, not a form:
bounces, complaints and ESP unsubscribes write them; staff read, export and (approvers) lift."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.admin import ModelAdmin
from unfold.contrib.import_export.forms import ExportForm
from unfold.decorators import action, display

from campaigns.admin.base import EstimatedCountPaginator, ReadOnlyAdminMixin, id_link, label_html
from campaigns.models import Delivery, Recipient, Suppression
from campaigns.resources import SuppressionResource
from campaigns.selectors.suppressions import suppressions_matching
from campaigns.selectors.zoned import zoned
from campaigns.services.suppressions import suppression_lift

LIFT_PERMISSION = "campaigns.delete_suppression"
SUPPRESSION_SEARCH_HELP = (
    "The start of an address (ada@, ada@example.com) or a whole domain (@example.com)."
)
DETAIL_CHARS = 80
REASON_TYPES = {
    "hard_bounce": "danger",
    "complaint": "danger",
    "rejected": "danger",
    "soft_bounces": "warning",
    "esp_unsubscribe": "info",
    "manual": "info",
}


class LiftForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=500,
        help_text="Why this address may be mailed again (the person asked, the mailbox is "
        "fixed...). It goes into the audit trail.",
    )


class SourceFilter(admin.SimpleListFilter):
    """The sources recorded so far (an ESP's name, "bounce_mail", ...): few distinct values."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        sources = Suppression.objects.order_by("source").values_list("source", flat=True)
        return [(value, value or "(none)") for value in sources.distinct()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset if value is None else queryset.filter(source=value)


@admin.register(Suppression)
class SuppressionAdmin(ExportMixin, ReadOnlyAdminMixin, ModelAdmin):
    resource_classes = [SuppressionResource]
    export_form_class = ExportForm
    export_formats = [CSV, XLSX]
    list_display = ("email", "reason_label", "detail_short", "source", "when", "recipient_link")
    list_filter = ("reason", SourceFilter, "created_at")
    search_fields = ("email",)  # shows the search box; get_search_results does the search
    search_help_text = SUPPRESSION_SEARCH_HELP
    list_before_template = "admin/campaigns/search_help.html"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = None
    actions_detail = ["lift"]
    fields = ("email", "reason_badge", "detail", "source", "when", "recipient_link", "event_link")
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        if not search_term.strip():
            return queryset, False
        return suppressions_matching(queryset, search_term), False

    @display(description="Reason", ordering="reason", label=REASON_TYPES)
    def reason_label(self, obj: Suppression) -> tuple[str, str]:
        return obj.reason, str(obj.get_reason_display())

    @display(description="Reason")
    def reason_badge(self, obj: Suppression) -> str:
        # The change page draws read-only fields as text, not as the list's label: drawn here.
        return label_html(str(obj.get_reason_display()), REASON_TYPES.get(obj.reason, ""))

    @display(description="Detail")
    def detail_short(self, obj: Suppression) -> str:
        return truncatechars(obj.detail, DETAIL_CHARS) or "—"

    @display(description="When", ordering="created_at")
    def when(self, obj: Suppression) -> str:
        return zoned(obj.created_at)

    @display(description="Recipient")
    def recipient_link(self, obj: Suppression) -> str:
        return id_link(Recipient, obj.recipient_id, "Recipient")

    @display(description="Reported by")
    def event_link(self, obj: Suppression) -> str:
        """The event behind it, linked to its delivery's timeline when it names one."""
        event = obj.event
        if event is None:
            return "—"
        text = f"{event.get_kind_display()} reported by {event.source or 'an unknown source'}"
        if event.delivery_id is None:
            return text
        return format_html("{} · {}", text, id_link(Delivery, event.delivery_id, "Delivery"))

    @action(description="Lift the suppression", icon="mark_email_unread", permissions=["lift"])
    def lift(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """A small form asking why; the suppressions service lifts it and audits it."""
        suppression = get_object_or_404(Suppression, pk=object_id)
        form = LiftForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                suppression_lift(
                    email=suppression.email, by=request.user, reason=form.cleaned_data["reason"]
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"{suppression.email} may be mailed again.")
                return HttpResponseRedirect(reverse("admin:campaigns_suppression_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Lift the suppression of {suppression.email}",
            "form": form,
            "suppression": suppression,
        }
        return TemplateResponse(request, "admin/campaigns/suppression/lift.html", context)

    def has_lift_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return bool(request.user.has_perm(LIFT_PERMISSION))
