"""Recipients, audiences and subscriptions; exports through django-import-export.

The Recipients "Import" button leads to the import job flow in campaigns.admin.imports.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.admin import ModelAdmin
from unfold.contrib.import_export.forms import ExportForm
from unfold.decorators import action, display

from campaigns.admin.base import EstimatedCountPaginator, ExactEmailSearch
from campaigns.admin.imports import may_import
from campaigns.models import Audience, Recipient, Subscription
from campaigns.resources import DeliveryResource, RecipientResource


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
    readonly_fields = ("created_at", "updated_at")

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
