"""A campaign as one recipient will read it, from the form's fields before they are saved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.models import Campaign
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.services.campaigns import CONTENT_FIELDS
from campaigns.services.rendering import TemplateProblem, campaign_compile_for, message_render

# The campaign fields a preview renders; each comes from the form when posted, else the database.
PREVIEW_FIELDS = CONTENT_FIELDS
# The preview's unsubscribe link goes nowhere: a click in the preview must not unsubscribe anyone.
PREVIEW_UNSUBSCRIBE_URL = "#unsubscribe-preview"
PREVIEW_WEB_VERSION_URL = "#web-version-preview"


class PreviewProblem(ValueError):
    """Why no preview could be drawn; the message is shown to the staff member as it is."""


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    recipient: str  # the address the preview was rendered for


def campaign_preview(
    *, campaign_id: int | None, data: Mapping[str, str], recipient_email: str
) -> Preview:
    """Renders the campaign as being edited for one recipient (the sample when none is named).

    1. Take each field from ``data`` (the form as posted), else from the stored campaign, else
       blank (a campaign not saved yet).
    2. Find the recipient by address; an address nobody has is a PreviewProblem.
    3. Compile and render; a template that does not compile is a PreviewProblem naming it.
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
    except TemplateProblem as exc:
        raise PreviewProblem(str(exc)) from exc
    return Preview(
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipient=recipient["email"],
    )


def _draft(data: Mapping[str, str], stored: Campaign | None) -> Campaign:
    """An unsaved campaign holding the form's content (the stored row's where not posted)."""
    draft = Campaign(pk=stored.pk if stored else None)
    for name in PREVIEW_FIELDS:
        if name == "layout":
            posted = str(data.get("layout", ""))
            draft.layout_id = (
                (int(posted) if posted.isdigit() else None)
                if "layout" in data
                else getattr(stored, "layout_id", None)
            )
        elif name == "web_archive":
            continue  # publishing changes nothing in the message
        else:
            setattr(draft, name, _field(name, data, stored))
    return draft


def _field(name: str, data: Mapping[str, str], stored: Campaign | None) -> str:
    if name in data:
        return data[name]
    # A new campaign's defaults (its format) where nothing is stored yet.
    return str(getattr(stored or Campaign(), name, "") or "")
