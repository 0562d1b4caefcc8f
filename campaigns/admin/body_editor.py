"""The campaign body's editor: one field whose editor follows the body's format.

Rich text gets Unfold's WYSIWYG editor (Trix, served from Unfold's own static files), Markdown
and HTML a monospace text area. Both editors are drawn and the inactive one is disabled, so the
form posts exactly one ``body``; the page's script swaps them when the format changes, after the
server has converted the content (``authoring.body_convert``), so switching never loses writing.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse
from unfold.contrib.forms.widgets import WYSIWYG_CLASSES, WysiwygWidget
from unfold.widgets import TEXTAREA_CLASSES

RICHTEXT = "richtext"  # Campaign.BodyFormat.RICHTEXT, the one format edited in Trix

# What each source format's text area invites staff to write.
PLACEHOLDERS = {
    "markdown": "# A heading\n\nHello {{ recipient.first_name }},\n\n- a list item\n"
    "- [a link](https://example.com)",
    "html": "<h1>A heading</h1>\n<p>Hello {{ recipient.first_name }},</p>",
}


class BodyEditorWidget(forms.Widget):
    """Trix for rich text, a monospace text area for Markdown and HTML; ``body_format`` is the
    format the page opens in (the form sets it from the bound data or the campaign)."""

    template_name = "campaigns/body_editor.html"
    body_format: str = RICHTEXT

    class Media:
        css = {"all": (*WysiwygWidget.Media.css["all"],)}
        js = (*WysiwygWidget.Media.js, "campaigns/body_editor.js")

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"].update(
            format=self.body_format,
            richtext=self.body_format == RICHTEXT,
            trix_classes=" ".join(WYSIWYG_CLASSES),
            source_classes=" ".join([*TEXTAREA_CLASSES, "opsdash-source"]),
            placeholders=PLACEHOLDERS,
            placeholder=PLACEHOLDERS.get(self.body_format, ""),
            convert_url=reverse("admin:campaigns_campaign_convert_body"),
        )
        return context
