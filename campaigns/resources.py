"""django-import-export resources: column mapping, widgets and export escaping."""

from __future__ import annotations

from typing import Any

from import_export import fields, resources

from campaigns.models import Recipient
from campaigns.services.audiences import InvalidEmail, normalise_email

# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class RecipientResource(resources.ModelResource):
    email = fields.Field(attribute="email", column_name="email")

    class Meta:
        model = Recipient
        import_id_fields = ("email",)
        fields = ("email", "first_name", "last_name", "status", "created_at")
        export_order = ("email", "first_name", "last_name", "status", "created_at")
        skip_unchanged = True
        report_skipped = True

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        try:
            row["email"] = normalise_email(str(row.get("email") or ""))
        except InvalidEmail as exc:
            raise ValueError(str(exc)) from exc

    def export_field(self, field: Any, instance: Any, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))
