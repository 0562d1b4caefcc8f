"""A send's frozen content compiled, and its fixed headers encoded, once per send per process.

At launch a Send keeps the exact content it delivers (``Send.content``); every batch compiles
from that, never from the live campaign, so an edit during a running send changes nothing for
its recipients and the send page can always show what they got.
"""

from __future__ import annotations

from typing import Any

from campaigns.models import Campaign, Send
from campaigns.services.authoring import campaign_compose
from campaigns.services.mime import WireFrame, wire_frame
from campaigns.services.rendering import (
    CompiledCampaign,
    campaign_compile_for,
    frozen_content_compile,
)

# What a send freezes: everything rendering a message reads (the body compiled into
# ``html_body`` and ``text_body``), and which layout version it was compiled with.
FROZEN_FIELDS = (
    "name",
    "subject",
    "from_email",
    "reply_to",
    "preheader",
    "text_body",
    "html_body",
)

_compiled_cache: dict[int, tuple[CompiledCampaign, WireFrame]] = {}


def content_of(campaign: Campaign) -> dict[str, Any]:
    """The campaign's content as a Send freezes it: the body composed once (layout, format,
    CSS inlined, text part), so batches render only the personalisation; the layout version
    says which edit of the layout the send went out with."""
    composed = campaign_compose(campaign=campaign)
    layout = campaign.layout
    return {
        "name": campaign.name,
        "subject": campaign.subject,
        "from_email": campaign.from_email,
        "reply_to": campaign.reply_to,
        "preheader": campaign.preheader,
        "html_body": composed.html,
        "text_body": composed.text,
        "layout_id": layout.pk if layout else None,
        "layout_version": layout.version if layout else None,
    }


def compiled_for(campaign: Campaign) -> CompiledCampaign:
    """The live campaign compiled, for a test message or a preview (never for a send)."""
    return campaign_compile_for(campaign)


def compiled_for_send(send: Send) -> tuple[CompiledCampaign, WireFrame]:
    """Keyed by the send's id: its content never changes, so each process compiles it once."""
    cached = _compiled_cache.get(send.pk)
    if cached is None:
        if len(_compiled_cache) > 64:
            _compiled_cache.clear()
        compiled = frozen_content_compile(campaign_id=send.campaign_id, content=send_content(send))
        cached = _compiled_cache[send.pk] = (compiled, wire_frame(compiled))
    return cached


def send_content(send: Send) -> dict[str, str]:
    """The send's frozen content; a send launched before sends kept it freezes it on first use.

    The conditional UPDATE makes the first batch's copy the one every later batch uses.
    """
    if not send.content:
        Send.objects.filter(pk=send.pk, content={}).update(content=content_of(send.campaign))
        send.refresh_from_db(fields=["content"])
    return {field: str(send.content.get(field, "")) for field in FROZEN_FIELDS}
