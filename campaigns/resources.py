"""django-import-export resources: column mapping, widgets and export escaping.

Small files go through RecipientResource in the admin (dry-run preview, then confirm); large
ones through campaigns.services.imports. Both upsert by normalised email, keep blank cells from
erasing known values, put unknown columns into ``attributes`` and respect suppression.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from campaigns.models import Audience, Delivery, Recipient, Subscription
from campaigns.services.audiences import InvalidEmail, normalise_email

# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_RESUBSCRIBABLE = (Recipient.Status.UNSUBSCRIBED, Recipient.Status.BOUNCED)
_SUPPRESSED = (*_RESUBSCRIBABLE, Recipient.Status.COMPLAINED)


def escape_formula(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class EscapedExportResource(resources.ModelResource):
    """Every exported cell, in every format (CSV, XLSX, ...), goes through escape_formula.

    The library's own IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT only strips a leading "=".
    """

    def export_field(self, field: Any, instance: Any, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))


class RecipientResource(EscapedExportResource):
    email = fields.Field(attribute="email", column_name="email")
    first_name = fields.Field(attribute="first_name", column_name="first_name")
    last_name = fields.Field(attribute="last_name", column_name="last_name")
    attributes = fields.Field(
        attribute="attributes", column_name="attributes", widget=widgets.JSONWidget()
    )
    # Status is shown on export but never imported: a file must not resubscribe anyone by
    # saying "active" (the resubscribe option is the one, explicit way).
    status = fields.Field(attribute="status", column_name="status", readonly=True)
    created_at = fields.Field(attribute="created_at", column_name="created_at", readonly=True)

    class Meta:
        model = Recipient
        import_id_fields = ("email",)
        fields = ("email", "first_name", "last_name", "attributes", "status", "created_at")
        export_order = fields
        skip_unchanged = True
        report_skipped = True

    def __init__(
        self, *, audience: Audience | None = None, resubscribe: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.audience = audience
        self.resubscribe = resubscribe

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        try:
            row["email"] = normalise_email(str(row.get("email") or ""))
        except InvalidEmail as exc:
            raise ValidationError({"email": str(exc)}) from exc

    def import_field(self, field: Any, instance: Any, row: Any, *args: Any, **kwargs: Any) -> None:
        if field.column_name not in row or field.readonly:
            return
        # A blank cell keeps what we know; a file never erases a name or the attributes.
        if instance.pk and str(row.get(field.column_name) or "").strip() == "":
            return
        if field.attribute == "attributes":
            incoming = field.clean(row, **kwargs) or {}
            instance.attributes = {**(instance.attributes or {}), **incoming}
            return
        super().import_field(field, instance, row, *args, **kwargs)

    def import_instance(self, instance: Recipient, row: Any, **kwargs: Any) -> None:
        super().import_instance(instance, row, **kwargs)
        known = {f.column_name for f in self.get_import_fields()} | {"status", "created_at"}
        extra = {
            str(k).strip(): str(v).strip()
            for k, v in row.items()
            if k not in known and k and v is not None and str(v).strip()
        }
        if extra:
            instance.attributes = {**(instance.attributes or {}), **extra}
        if self.resubscribe and instance.status in _RESUBSCRIBABLE:
            instance.status = Recipient.Status.ACTIVE

    def skip_row(
        self,
        instance: Recipient,
        original: Recipient | None,
        row: Any,
        import_validation_errors: Any = None,
    ) -> bool:
        if original is not None and original.pk and original.status in _SUPPRESSED:
            # Suppressed: left exactly as it is unless resubscribe was chosen.
            return not (self.resubscribe and original.status in _RESUBSCRIBABLE)
        if instance.pk and self._subscription_changes(instance):
            return False
        return bool(
            super().skip_row(
                instance, original, row, import_validation_errors=import_validation_errors
            )
        )

    def _subscription_changes(self, recipient: Recipient) -> bool:
        if self.audience is None:
            return False
        current = (
            Subscription.objects.filter(recipient=recipient, audience=self.audience)
            .values_list("status", flat=True)
            .first()
        )
        if current is None:
            return True
        return bool(current != Subscription.Status.SUBSCRIBED and self.resubscribe)

    def after_save_instance(self, instance: Recipient, row: Any, **kwargs: Any) -> None:
        if self.audience is None or instance.status != Recipient.Status.ACTIVE:
            return
        subscription, created = Subscription.objects.get_or_create(
            recipient=instance, audience=self.audience
        )
        if not created and self.resubscribe and subscription.status != "subscribed":
            subscription.status = Subscription.Status.SUBSCRIBED
            subscription.save(update_fields=["status", "updated_at"])


class DeliveryResource(EscapedExportResource):
    """The delivery log, export only: SMTP responses and errors come from outside servers."""

    send = fields.Field(attribute="send_id", column_name="send")
    campaign = fields.Field(attribute="send__campaign__name", column_name="campaign")
    recipient = fields.Field(attribute="recipient__email", column_name="recipient")
    message_id = fields.Field(attribute="message_id", column_name="message_id")

    class Meta:
        model = Delivery
        fields = (
            "id", "send", "campaign", "recipient", "status", "attempts", "last_error",
            "smtp_response", "message_id", "task_id", "claimed_at", "sent_at", "updated_at",
        )  # fmt: skip
        export_order = fields

    def get_queryset(self) -> Any:
        return Delivery.objects.select_related("send__campaign", "recipient").order_by("id")

    def import_data(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the delivery log is export only")
