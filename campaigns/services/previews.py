"""A campaign as one recipient will read it, from the form's fields before they are saved.

The message is compiled by ``rendering.campaign_compile_for``, as a test message is, which puts
it together with ``authoring.content_compose`` as a launch does: so the preview shows exactly
what the send will send, the layout around the content, sanitised, CSS inlined, and the text
part (written or generated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from campaigns.models import Campaign, Layout
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.services.audiences import message_links
from campaigns.services.authoring import body_to_html
from campaigns.services.campaigns import CONTENT_FIELDS
from campaigns.services.rendering import (
    CompiledCampaign,
    TemplateProblem,
    campaign_compile_for,
    message_render,
    template_values,
)
from campaigns.services.template_engine import part_render, template_compile

# The campaign fields a preview renders (what a send compiles; publishing to the archive shows
# nothing in a message); each comes from the form when posted, else the database.
PREVIEW_FIELDS = tuple(name for name in CONTENT_FIELDS if name != "web_archive")
# The preview's unsubscribe link goes nowhere: a click in the preview must not unsubscribe anyone.
PREVIEW_UNSUBSCRIBE_URL = "#unsubscribe-preview"
PREVIEW_WEB_VERSION_URL = "#web-version-preview"

# A media query's dark-mode condition, and the light one, wherever they stand in the query.
_DARK = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_LIGHT = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)


class PreviewProblem(ValueError):
    """Why no preview could be drawn; the message is shown to the staff member as it is."""


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    recipient: str  # the address the preview was rendered for
    html_dark: str = ""  # the HTML as a mail app in dark mode shows it
    from_email: str = ""
    reply_to: str = ""
    preheader: str = ""
    list_unsubscribe: str = ""  # the header as a test message carries it
    removed: list[str] = field(default_factory=list)  # what the sanitiser left out


def campaign_preview(
    *, campaign_id: int | None, data: Mapping[str, str], recipient_email: str
) -> Preview:
    """Renders the campaign as being edited for one recipient (the sample when none is named).

    1. Take each field from ``data`` (the form as posted), else from the stored campaign, else
       a new campaign's default, into an unsaved campaign.
    2. Find the recipient by address; an address nobody has is a PreviewProblem.
    3. Compile it as a test message does (layout, sanitising, inlined CSS, text part) and
       render it; a template that does not compile is a PreviewProblem naming it.
    """
    stored = Campaign.objects.filter(pk=campaign_id).first() if campaign_id else None
    draft = _draft(data, stored)
    recipient = campaign_selectors.preview_recipient(email=recipient_email)
    if recipient is None:
        raise PreviewProblem("No recipient has this address.")
    try:
        compiled = campaign_compile_for(draft)
        rendered = message_render(
            compiled,
            recipient=recipient,
            unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL,
            web_version_url=PREVIEW_WEB_VERSION_URL,
        )
        preheader = _preheader_render(draft, compiled, recipient)
    except TemplateProblem as exc:
        raise PreviewProblem(str(exc)) from exc
    return Preview(
        subject=rendered.subject,
        html=rendered.html,
        html_dark=dark_variant(rendered.html),
        text=rendered.text,
        recipient=recipient["email"],
        from_email=draft.from_email,
        reply_to=draft.reply_to,
        preheader=preheader,
        list_unsubscribe=f"<{message_links(recipient_id=0, send_id=0).unsubscribe_url}>",
        removed=body_to_html(body=draft.body, body_format=draft.body_format).removed,
    )


def dark_variant(html: str) -> str:
    """The message as a mail app in dark mode draws it.

    An iframe cannot be put in dark mode by its page, so the dark-mode rules are made to apply
    always and the light-only ones never: ``(prefers-color-scheme: dark)`` becomes a condition
    that is always true, ``(prefers-color-scheme: light)`` one that never is.
    """
    return _LIGHT.sub("(max-width: 0px)", _DARK.sub("(min-width: 0px)", html))


def _preheader_render(
    draft: Campaign, compiled: CompiledCampaign, recipient: Mapping[str, Any]
) -> str:
    """The preview text as this recipient's inbox shows it (the message hides it in the HTML,
    where a mail app finds it; here it is shown on its own)."""
    if not draft.preheader.strip():
        return ""
    values = template_values(
        compiled,
        recipient=recipient,
        unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL,
        web_version_url=PREVIEW_WEB_VERSION_URL,
    )
    template = template_compile(draft.preheader, label="Preview text")
    return _WHITESPACE.sub(
        " ",
        part_render(
            template,
            values,
            label="Preview text",
            max_bytes=settings.OPSDASH_TEMPLATE_SUBJECT_MAX_BYTES,
            autoescape=False,
        ),
    ).strip()


def _draft(data: Mapping[str, str], stored: Campaign | None) -> Campaign:
    """An unsaved campaign holding the form's content (the stored row's where not posted)."""
    draft = Campaign(pk=stored.pk if stored else None)
    for name in PREVIEW_FIELDS:
        if name == "layout":
            draft.layout = _layout(data, stored)
        else:
            setattr(draft, name, _field(name, data, stored))
    return draft


def _field(name: str, data: Mapping[str, str], stored: Campaign | None) -> str:
    if name in data:
        return data[name]
    # A new campaign's defaults (its format) where nothing is stored yet.
    return str(getattr(stored or Campaign(), name, "") or "")


def _layout(data: Mapping[str, str], stored: Campaign | None) -> Layout | None:
    """The posted layout (blank: none), else the stored campaign's."""
    if "layout" not in data:
        return stored.layout if stored else None
    chosen = str(data["layout"]).strip()
    if not chosen:
        return None
    layout = Layout.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
    if layout is None:
        raise PreviewProblem("The chosen layout no longer exists: choose another.")
    return layout
