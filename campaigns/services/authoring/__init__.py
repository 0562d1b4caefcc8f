"""Authoring: a campaign body in its format, set in a layout, compiled once per send.

``body_to_html`` / ``body_convert``: the formats (rich text, Markdown, HTML).
``content_compose``: layout + body -> the message HTML (CSS inlined) and text, at launch, for
test messages and for previews. ``content_warnings``: what a save warns about.
"""

from __future__ import annotations

from campaigns.models import Campaign
from campaigns.services.authoring.compose import ComposedContent, content_compose
from campaigns.services.authoring.formats import body_convert, body_to_html
from campaigns.services.authoring.sanitise import SanitisedBody

__all__ = [
    "ComposedContent",
    "SanitisedBody",
    "body_convert",
    "body_to_html",
    "campaign_compose",
    "content_compose",
]


def campaign_compose(*, campaign: Campaign) -> ComposedContent:
    """The campaign's content as a send of it now would freeze it."""
    return content_compose(
        body=campaign.body,
        body_format=campaign.body_format,
        layout=campaign.layout,
        preheader=campaign.preheader,
        text_body=campaign.text_body,
    )
