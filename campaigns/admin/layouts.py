"""Layouts: the frame every campaign body is set in. The change page previews the layout
around a sample body; the list says which layouts campaigns use."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.models import Layout
from campaigns.services.authoring.layouts import (
    EDITABLE_FIELDS,
    layout_content_check,
    layout_preview,
    layout_save,
    layouts_with_usage,
)
from campaigns.services.template_engine import TemplateProblem


class LayoutForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Layout
        fields = list(EDITABLE_FIELDS)
        widgets = {"html": forms.Textarea(attrs={"rows": 30, "spellcheck": "false"})}

    def _get_validation_exclusions(self) -> set[str]:
        # Ticking "default" takes it from the current default (layout_save), not a conflict.
        excluded: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]
        return {*excluded, "is_default"}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "html" in cleaned and not self.errors:
            trial = Layout(**{name: cleaned.get(name) for name in EDITABLE_FIELDS})
            try:
                layout_content_check(layout=trial)
            except ValidationError as exc:
                self.add_error(None, exc)
        return cleaned


@admin.register(Layout)
class LayoutAdmin(ModelAdmin):
    form = LayoutForm
    list_display = ["name", "version", "is_default", "used_by"]
    search_fields = ["name"]
    readonly_fields = ["version", "updated_at", "updated_by", "preview"]
    fieldsets = [
        (None, {"fields": ["name", "is_default", "version", "updated_at", "updated_by"]}),
        ("Brand", {"fields": ["logo_url", "brand_color", "legal_address", "footer_text"]}),
        ("HTML", {"fields": ["html"]}),
        ("Preview", {"fields": ["preview"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Layout]:
        return layouts_with_usage()

    @display(description="Used by")
    def used_by(self, obj: Layout) -> str:
        count = getattr(obj, "campaign_count", None)
        if count is None:
            count = obj.campaigns.count()
        return f"{count} campaign" if count == 1 else f"{count} campaigns"

    @display(description="Around a sample body")
    def preview(self, obj: Layout) -> SafeString | str:
        if obj.pk is None:
            return "Save the layout to see it around a sample body."
        try:
            html = layout_preview(layout=obj)
        except TemplateProblem as exc:
            return str(exc)
        # An empty sandbox: no script, no forms, an origin of its own.
        return format_html(
            '<iframe sandbox="" referrerpolicy="no-referrer" title="Layout preview" '
            'class="opsdash-preview-frame" style="width: 100%; min-height: 640px; '
            'background: #fff;" srcdoc="{}"></iframe>',
            escape(html),  # a rendered template is marked safe: escape it for the attribute
        )

    def save_model(self, request: HttpRequest, obj: Layout, form: Any, change: bool) -> None:
        layout_save(layout=obj, by=request.user)
