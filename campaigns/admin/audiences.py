"""Recipients, audiences and subscriptions; CSV import and export through django-import-export."""

from __future__ import annotations

from django.contrib import admin
from import_export.admin import ImportExportModelAdmin
from unfold.admin import ModelAdmin
from unfold.contrib.import_export.forms import ExportForm, ImportForm
from unfold.decorators import display

from campaigns.models import Audience, Recipient, Subscription
from campaigns.resources import RecipientResource


@admin.register(Recipient)
class RecipientAdmin(ModelAdmin, ImportExportModelAdmin):
    resource_classes = [RecipientResource]
    import_form_class = ImportForm
    export_form_class = ExportForm
    list_display = ("email", "first_name", "last_name", "status_label", "created_at")
    list_filter = ("status",)
    search_fields = ("=email", "last_name")
    show_full_result_count = False
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


@admin.register(Audience)
class AudienceAdmin(ModelAdmin):
    list_display = ("name", "description", "created_at")
    search_fields = ("name",)


@admin.register(Subscription)
class SubscriptionAdmin(ModelAdmin):
    list_display = ("recipient", "audience", "status", "created_at")
    list_filter = ("status", "audience")
    list_select_related = ("recipient", "audience")
    search_fields = ("=recipient__email",)
    raw_id_fields = ("recipient", "source_import")
    show_full_result_count = False
