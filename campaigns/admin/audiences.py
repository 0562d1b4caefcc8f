"""Recipients, audiences and subscriptions; CSV import and export through django-import-export."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, TSV, XLSX
from import_export.forms import ConfirmImportForm
from unfold.admin import ModelAdmin
from unfold.contrib.import_export.forms import ExportForm, ImportForm
from unfold.decorators import action, display
from unfold.widgets import UnfoldBooleanWidget

from campaigns.admin.base import EstimatedCountPaginator, ExactEmailSearch
from campaigns.admin.imports import (
    ImportUploadForm,
    audience_field,
    resubscribe_field,
    upload_to_job,
)
from campaigns.models import Audience, Recipient, Subscription
from campaigns.resources import DeliveryResource, RecipientResource


class RecipientImportForm(ImportForm):
    """Unfold's import form plus where the addresses go and whether to run in the background."""

    audience = audience_field()
    resubscribe = resubscribe_field()
    background = forms.BooleanField(
        label="Import in the background",
        required=False,
        widget=UnfoldBooleanWidget,
        help_text="For large files: map the columns, then a worker imports the file while you "
        "watch its progress. Files over the size limit below always go this way.",
    )


class RecipientConfirmImportForm(ConfirmImportForm):
    audience = forms.ModelChoiceField(
        queryset=Audience.objects.all(), required=False, widget=forms.HiddenInput
    )
    resubscribe = forms.BooleanField(required=False, widget=forms.HiddenInput)


@admin.register(Recipient)
class RecipientAdmin(ExactEmailSearch, ModelAdmin, ImportExportModelAdmin):
    resource_classes = [RecipientResource]
    import_form_class = RecipientImportForm
    confirm_form_class = RecipientConfirmImportForm
    export_form_class = ExportForm
    import_formats = [CSV, TSV, XLSX]
    export_formats = [CSV, XLSX]
    actions_list = [
        {
            "title": "Delivery log",
            "icon": "download",
            "items": ["export_delivery_log_csv", "export_delivery_log_xlsx"],
        }
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

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        form = kwargs.get("form")
        data = getattr(form, "cleaned_data", None) or {}
        return {"audience": data.get("audience"), "resubscribe": bool(data.get("resubscribe"))}

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            audience = import_form.cleaned_data.get("audience")
            initial["audience"] = audience.pk if audience else None
            initial["resubscribe"] = import_form.cleaned_data.get("resubscribe", False)
        return initial

    def import_action(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """Small files get the library's preview and confirm; large ones an ImportJob."""
        if request.method == "POST" and "import_file" in request.FILES:
            if not self.has_import_permission(request):
                raise PermissionDenied
            form = self.create_import_form(request)
            if form.is_valid() and self._goes_to_background(form):
                response = self._background_import(request, form)
                if response is not None:
                    return response
        return super().import_action(request, **kwargs)

    def _goes_to_background(self, form: Any) -> bool:
        upload = form.cleaned_data["import_file"]
        return bool(
            form.cleaned_data.get("background")
            or (upload.size or 0) > settings.OPSDASH_IMPORT_BACKGROUND_BYTES
        )

    def _background_import(self, request: HttpRequest, form: Any) -> HttpResponse | None:
        upload_form = ImportUploadForm(
            data={
                "audience": form.cleaned_data["audience"].pk
                if form.cleaned_data["audience"]
                else "",
                "resubscribe": form.cleaned_data["resubscribe"] or "",
            },
            files=MultiValueDict({"file": [form.cleaned_data["import_file"]]}),
        )
        if not upload_form.is_valid():
            return None
        job = upload_to_job(request, upload_form)
        if job is None:
            # Never fall back to the in-request path with a file that was refused here.
            for text in upload_form.errors.get("file", []):
                messages.error(request, str(text))
            return HttpResponseRedirect(reverse("admin:campaigns_recipient_import"))
        return HttpResponseRedirect(reverse("admin:campaigns_importjob_mapping", args=[job.pk]))

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
