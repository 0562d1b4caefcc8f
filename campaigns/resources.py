"""django-import-export resources, for export only: recipients, the delivery log and the
suppression list.

Imports do not come through here: every recipient import, whatever its size, is an ImportJob
run by campaigns.services.imports, the one place the import rules live.
"""

from __future__ import annotations

import re
from typing import Any

from import_export import fields, resources, widgets

from campaigns.models import Delivery, Recipient, Suppression

# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@")
# Control characters a spreadsheet may act on in the cell's first position.
_CONTROL_PREFIXES = ("\t", "\r", "\n")
# What a spreadsheet skips before a formula sign: Unicode whitespace (spaces, tabs, no-break
# spaces, line breaks) and the zero-width characters and byte-order mark.
_LEADING_BLANKS = re.compile(r"^[\s\u200b-\u200d\u2060\ufeff]+")


def escape_formula(value: Any) -> Any:
    """Prefixes a quote to a text cell a spreadsheet would run.

    Excel and LibreOffice skip leading blanks before a formula sign, so the sign is looked for
    after them.
    """
    if not isinstance(value, str):
        return value
    stripped = _LEADING_BLANKS.sub("", value)
    if value.startswith(_CONTROL_PREFIXES) or stripped.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class EscapedExportResource(resources.ModelResource):
    """Export only. Every exported cell, in every format (CSV, XLSX, ...), goes through
    escape_formula: the library's own IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT only strips a
    leading "="."""

    def export_field(self, field: Any, instance: Any, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))

    def import_data(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is export only")


class RecipientResource(EscapedExportResource):
    email = fields.Field(attribute="email", column_name="email")
    first_name = fields.Field(attribute="first_name", column_name="first_name")
    last_name = fields.Field(attribute="last_name", column_name="last_name")
    attributes = fields.Field(
        attribute="attributes", column_name="attributes", widget=widgets.JSONWidget()
    )
    status = fields.Field(attribute="status", column_name="status")
    created_at = fields.Field(attribute="created_at", column_name="created_at")

    class Meta:
        model = Recipient
        fields = ("email", "first_name", "last_name", "attributes", "status", "created_at")
        export_order = fields


class DeliveryResource(EscapedExportResource):
    """The delivery log: SMTP responses and errors come from outside servers."""

    send = fields.Field(attribute="send_id", column_name="send")
    campaign = fields.Field(attribute="send__campaign__name", column_name="campaign")
    recipient = fields.Field(attribute="recipient__email", column_name="recipient")
    message_id = fields.Field(attribute="message_id", column_name="message_id")
    skip_reason = fields.Field(column_name="skip_reason")

    class Meta:
        model = Delivery
        fields = (
            "id", "send", "campaign", "recipient", "status", "skip_reason", "attempts",
            "last_error", "smtp_response", "message_id", "task_id", "claimed_at", "sent_at",
            "updated_at",
        )  # fmt: skip
        export_order = fields

    def dehydrate_skip_reason(self, delivery: Delivery) -> str:
        # Why a row was skipped in words ("cancelled before sending"), as on the send's page;
        # empty for a row that was not skipped.
        if delivery.status != Delivery.Status.SKIPPED:
            return ""
        return str(delivery.get_skip_reason_display())

    def get_queryset(self) -> Any:
        return Delivery.objects.select_related("send__campaign", "recipient").order_by("id")


class SuppressionResource(EscapedExportResource):
    """The suppression list: the address and the detail come from bounce mail and ESPs, so an
    address like ``=cmd@example.com`` or a detail starting with "=" reaches the file escaped."""

    reason = fields.Field(column_name="reason")
    recipient = fields.Field(attribute="recipient_id", column_name="recipient")
    event = fields.Field(attribute="event_id", column_name="event")

    class Meta:
        model = Suppression
        fields = ("email", "reason", "detail", "source", "created_at", "recipient", "event")
        export_order = fields

    def dehydrate_reason(self, suppression: Suppression) -> str:
        return str(suppression.get_reason_display())

    def get_queryset(self) -> Any:
        return Suppression.objects.order_by("email")
