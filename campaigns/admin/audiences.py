"""Recipients, audiences and subscriptions; exports through django-import-export.

The Recipients "Import" button leads to the import job flow in campaigns.admin.imports.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.admin import ModelAdmin
from unfold.contrib.import_export.forms import ExportForm
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget

from campaigns.admin.base import EstimatedCountPaginator, ExactEmailSearch
from campaigns.admin.imports import may_import
from campaigns.models import Audience, Recipient, Subscription
from campaigns.resources import DeliveryResource, RecipientResource
from campaigns.services.audiences import (
    RESUBSCRIBE_PERMISSION,
    STATUS_CHANGE_PERMISSION,
    recipient_status_change,
)


class RecipientStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Recipient.Status.choices, widget=UnfoldAdminSelectWidget)
    reason = forms.CharField(
        required=False,
        max_length=1000,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="Kept in the audit trail. Required to make a complained address active.",
    )


@admin.register(Recipient)
class RecipientAdmin(ExactEmailSearch, ExportMixin, ModelAdmin):
    resource_classes = [RecipientResource]
    export_form_class = ExportForm
    export_formats = [CSV, XLSX]
    actions_list = [
        "import_recipients",
        {
            "title": "Delivery log",
            "icon": "download",
            "items": ["export_delivery_log_csv", "export_delivery_log_xlsx"],
        },
    ]
    list_display = ("email", "first_name", "last_name", "status_label", "created_at")
    list_filter = ("status",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    # Consent is changed only through "Change status" (its own permission, audited).
    readonly_fields = ("status", "created_at", "updated_at")
    actions_detail = ["change_status"]

    @display(
        description="Status",
        label={
            "active": "success",
            "unsubscribed": "warning",
            "bounced": "danger",
            "complained": "danger",
        },
    )
    def status_label(self, obj: Recipient) -> str:
        return obj.status

    @action(description="Import", icon="upload", permissions=["import_recipients"])
    def import_recipients(self, request: HttpRequest) -> HttpResponse:
        """Every import, small or large, is an ImportJob: upload, map, run, report."""
        return HttpResponseRedirect(reverse("admin:campaigns_importjob_add"))

    def has_import_recipients_permission(self, request: HttpRequest) -> bool:
        return may_import(request)

    @action(
        description="Change status",
        icon="how_to_reg",
        permissions=["change_status"],
        url_path="status",
    )
    def change_status(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """A small form: the new status and why; the service checks and audits it."""
        recipient = get_object_or_404(Recipient, pk=object_id)
        form = RecipientStatusForm(request.POST or None, initial={"status": recipient.status})
        if request.method == "POST" and form.is_valid():
            try:
                recipient_status_change(
                    recipient=recipient,
                    status=form.cleaned_data["status"],
                    by=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"{recipient.email} is {recipient.status} now.")
                return HttpResponseRedirect(
                    reverse("admin:campaigns_recipient_change", args=[recipient.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Change the status of {recipient.email}",
            "form": form,
            "recipient": recipient,
        }
        return TemplateResponse(request, "admin/campaigns/recipient/status.html", context)

    def has_change_status_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return bool(request.user.has_perm(STATUS_CHANGE_PERMISSION))

    @action(description="Export the delivery log (CSV)", permissions=["view_delivery"])
    def export_delivery_log_csv(self, request: HttpRequest) -> HttpResponse:
        return delivery_log_response(request, CSV())

    @action(description="Export the delivery log (XLSX)", permissions=["view_delivery"])
    def export_delivery_log_xlsx(self, request: HttpRequest) -> HttpResponse:
        return delivery_log_response(request, XLSX())

    def has_view_delivery_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("campaigns.view_delivery"))


def delivery_log_response(request: HttpRequest, file_format: Any) -> HttpResponse:
    """Every delivery (or one send's, with ?send=<id>), every cell formula-escaped."""
    queryset = DeliveryResource().get_queryset()
    send_id = request.GET.get("send", "")
    if send_id.isdigit():
        queryset = queryset.filter(send_id=int(send_id))
    dataset = DeliveryResource().export(queryset=queryset)
    response = HttpResponse(
        file_format.export_data(dataset), content_type=file_format.get_content_type()
    )
    name = f"delivery-log{'-send-' + send_id if send_id.isdigit() else ''}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{file_format.get_extension()}"'
    return response


@admin.register(Audience)
class AudienceAdmin(ModelAdmin):
    list_display = ("name", "description", "created_at")
    search_fields = ("name",)


@admin.register(Subscription)
class SubscriptionAdmin(ExactEmailSearch, ModelAdmin):
    list_display = ("recipient", "audience", "status", "created_at")
    list_filter = ("status", "audience")
    list_select_related = ("recipient", "audience")
    email_lookup = "recipient__email"
    search_fields = ("recipient__email",)
    search_help_text = "The exact email address of a recipient."
    raw_id_fields = ("recipient", "source_import")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Putting an unsubscribed person back on a list is a re-subscription: it takes the
        re-subscribe permission, like an import's "resubscribe"."""
        fields = tuple(super().get_readonly_fields(request, obj))
        if (
            obj is not None
            and obj.status != Subscription.Status.SUBSCRIBED
            and not request.user.has_perm(RESUBSCRIBE_PERMISSION)
        ):
            return (*fields, "status")
        return fields
