"""Recipients, audiences and subscriptions; exports through django-import-export.

The Recipients "Import" button leads to the import job flow in campaigns.admin.imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
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
from campaigns.selectors.audiences import audience_subscriber_counts
from campaigns.selectors.audit import audit_actor, audit_summary, audit_title, recipient_history
from campaigns.selectors.occurrence import occurrence_words
from campaigns.selectors.recipients import (
    RECIPIENT_PAGE_DELIVERIES,
    SearchKind,
    attribute_rows,
    recipient_deliveries,
    recipient_search_read,
    recipient_subscriptions,
    recipient_suppression,
    recipients_matching,
    subscription_rows,
)
from campaigns.selectors.zoned import zoned
from campaigns.services.audiences import (
    RESUBSCRIBE_PERMISSION,
    STATUS_CHANGE_PERMISSION,
    InvalidEmail,
    normalise_email,
    recipient_status_change,
    subscription_status_change,
)


class RecipientStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Recipient.Status.choices, widget=UnfoldAdminSelectWidget)
    reason = forms.CharField(
        required=False,
        max_length=1000,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="Kept in the audit trail. Required to make a complained address active.",
    )


if TYPE_CHECKING:  # the stubs make ModelForm generic; at runtime it is not subscriptable
    _RecipientModelForm = forms.ModelForm[Recipient]
else:
    _RecipientModelForm = forms.ModelForm


class RecipientForm(_RecipientModelForm):
    """A new address is stored normalised and refused when anyone has it in any case: an
    opted-out person must never come back as a "new" recipient."""

    class Meta:
        model = Recipient
        fields = ("email", "first_name", "last_name", "attributes")

    def clean_email(self) -> str:
        try:
            email = normalise_email(str(self.cleaned_data.get("email") or ""))
        except InvalidEmail as exc:
            raise ValidationError(str(exc)) from exc
        if Recipient.objects.filter(email__iexact=email).exclude(pk=self.instance.pk).exists():
            raise ValidationError("A recipient with this address exists already.")
        return email


RECIPIENT_SEARCH_HELP = (
    "Finds an exact address (ada@example.com) or everyone at a domain (@example.com). "
    "Part of a name or address finds nothing: it would scan millions of rows."
)


@admin.register(Recipient)
class RecipientAdmin(ExportMixin, ModelAdmin):
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
    list_display = ("email", "first_name", "last_name", "status_label", "created")
    list_filter = ("status",)
    # The admin shows its search box for any search field; get_search_results does the search.
    search_fields = ("email",)
    search_help_text = RECIPIENT_SEARCH_HELP
    list_before_template = "admin/campaigns/search_help.html"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    form = RecipientForm
    change_form_template = "admin/campaigns/recipient/change_form.html"
    # Consent is changed only through "Change status" (its own permission, audited).
    readonly_fields = ("status_label", "created", "updated", "attributes_table")
    actions_detail = ["change_status"]

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        """An exact address on the unique index, or a domain on the domain index: never the
        substring scan Django's search runs over every row."""
        if not search_term.strip():
            return queryset, False
        search = recipient_search_read(search_term)
        if search.kind is SearchKind.NEITHER:
            messages.info(
                request,
                f"“{search_term.strip()}” is neither an address nor a domain, so the search "
                f"finds nobody. {RECIPIENT_SEARCH_HELP}",
            )
        return recipients_matching(queryset, search), False

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("email", "first_name", "last_name", "attributes")})]
        person = ("email", "first_name", "last_name", "status_label", "created", "updated")
        fieldsets: list[Any] = [
            (None, {"fields": person}),
            ("Attributes", {"fields": ("attributes_table",)}),
        ]
        if self.has_change_permission(request, obj):
            edit = {"fields": ("attributes",), "classes": ("collapse",)}
            fieldsets.append(("Edit the attributes (advanced)", edit))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # An address is the person: renaming it would let a new record take over the old
        # address with none of its opt-outs.
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None else ("email", *fields)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        recipient = self.get_object(request, object_id)
        if recipient is not None:
            extra_context = {**(extra_context or {}), **recipient_page(recipient)}
        response: HttpResponse = super().change_view(request, object_id, form_url, extra_context)
        return response

    @display(description="Added", ordering="created_at")
    def created(self, obj: Recipient) -> str:
        return zoned(obj.created_at)

    @display(description="Last changed")
    def updated(self, obj: Recipient) -> str:
        return zoned(obj.updated_at)

    @display(description="Attributes")
    def attributes_table(self, obj: Recipient) -> SafeString | str:
        rows = attribute_rows(obj.attributes)
        if not rows:
            return "None."
        body = format_html_join(
            "",
            '<tr class="border-t border-base-200 dark:border-base-800">'
            '<th class="pr-6 py-1 text-left font-medium align-top">{}</th>'
            '<td class="py-1">{}</td></tr>',
            rows,
        )
        return format_html('<table id="recipient-attributes" class="text-sm">{}</table>', body)

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


def recipient_page(recipient: Recipient) -> dict[str, Any]:
    """What the recipient's page shows under the form: lists, consent, deliveries."""
    history = recipient_history(recipient)
    suppression = recipient_suppression(recipient, history)
    by = suppression.by if suppression else None
    deliveries, more = recipient_deliveries(recipient)
    see_all = (
        reverse("admin:campaigns_delivery_changelist") + "?" + urlencode({"q": recipient.email})
    )
    lists = subscription_rows(recipient_subscriptions(recipient), history)
    return {
        "recipient_subscriptions": [(row, zoned(row.since)) for row in lists],
        "recipient_lists_on": sum(row.subscribed for row in lists),
        "recipient_suppression": suppression,
        "recipient_suppression_by": audit_actor(by) if by else "",
        "recipient_history": [
            (entry, audit_title(entry), audit_summary(entry), zoned(entry.created_at))
            for entry in history
        ],
        "recipient_deliveries": [
            (row, zoned(row.sent_at, empty=""), occurrence_words(row.send.occurrence_key))
            for row in deliveries
        ],
        "recipient_deliveries_more": more,
        "recipient_deliveries_limit": RECIPIENT_PAGE_DELIVERIES,
        "recipient_deliveries_url": see_all,
    }


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
    list_display = ("name", "subscribed", "description", "created_at")
    search_fields = ("name",)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """Counts the page's audiences in one grouped (and cached) query, not one per row."""
        changelist = super().get_changelist_instance(request)
        audiences = list(changelist.result_list)
        counts = audience_subscriber_counts(a.pk for a in audiences)
        for audience in audiences:
            audience.subscriber_count = counts.get(audience.pk, 0)
        return changelist

    @display(description="Subscribed")
    def subscribed(self, obj: Audience) -> str:
        count = getattr(obj, "subscriber_count", None)
        if count is None:  # drawn outside the list (never today): one count for this one
            count = audience_subscriber_counts([obj.pk]).get(obj.pk, 0)
        return f"{count:,}"


@admin.register(Subscription)
class SubscriptionAdmin(ExactEmailSearch, ModelAdmin):
    list_display = ("recipient", "audience", "status", "since")
    list_filter = ("status", "audience")
    list_select_related = ("recipient", "audience")
    email_lookup = "recipient__email"
    search_fields = ("recipient__email",)
    search_help_text = (
        "The exact email address of a recipient (ada@example.com); part of one finds nothing."
    )
    list_before_template = "admin/campaigns/search_help.html"
    raw_id_fields = ("recipient", "source_import")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    @display(description="Since", ordering="updated_at")
    def since(self, obj: Subscription) -> str:
        """When the row took its status; the recipient's page reads the consent history for
        the exact moment, this list (one query for the page) the row's last change."""
        if obj.status == Subscription.Status.SUBSCRIBED:
            return f"Subscribed since {zoned(obj.created_at)}"
        return f"Unsubscribed on {zoned(obj.updated_at)}"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """A subscription's who and which list never change; its status changes only with the
        status permission (and putting someone back on a list with the re-subscribe one), and
        then through the audited service (``save_model``)."""
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        fields = (*fields, "recipient", "audience", "source_import")
        may_change = request.user.has_perm(STATUS_CHANGE_PERMISSION) and (
            obj.status == Subscription.Status.SUBSCRIBED
            or request.user.has_perm(RESUBSCRIBE_PERMISSION)
        )
        return fields if may_change else (*fields, "status")

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        if not change or "status" not in form.changed_data:
            super().save_model(request, obj, form, change)
            return
        wanted = obj.status
        obj.status = form.initial["status"]
        super().save_model(request, obj, form, change)  # anything else the form changed
        try:
            subscription_status_change(subscription=obj, status=wanted, by=request.user)
        except (PermissionDenied, ValidationError) as exc:
            messages.error(request, str(exc.args[0] if exc.args else exc))
