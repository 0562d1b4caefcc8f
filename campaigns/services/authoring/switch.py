"""Switching a campaign body between rich text, Markdown and HTML without losing the writing.

The conversion itself is ``authoring.body_convert``; this says in staff words what the switch
did, naming what the new format cannot carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.models import Campaign
from campaigns.services.authoring.formats import body_convert, body_to_html

# What a format cannot hold, said when the body moves into it.
_DROPS = {
    Campaign.BodyFormat.MARKDOWN: "Markdown keeps text, headings, lists, links and images; "
    "colours, fonts and other styling are not kept.",
    Campaign.BodyFormat.RICHTEXT: "The rich text editor keeps text, headings, lists, quotes "
    "and links; styling and layout tables are not kept.",
}


class FormatProblem(ValueError):
    """A switch that cannot be made; the message is shown to staff as it is."""


@dataclass(frozen=True)
class FormatSwitch:
    body: str  # the content in the new format
    message: str  # what happened, for the line under the editor


def body_format_switch(*, body: str, from_format: str, to_format: str) -> FormatSwitch:
    """Converts ``body`` and says what the new format kept and what it left out."""
    formats = Campaign.BodyFormat
    if from_format not in formats.values or to_format not in formats.values:
        raise FormatProblem("Choose rich text, Markdown or HTML as the body format.")
    converted = body_convert(body=body, from_format=from_format, to_format=to_format)
    said = [
        f"The body was converted from {formats(from_format).label} to {formats(to_format).label}."
    ]
    if drop := _DROPS.get(formats(to_format)):
        said.append(drop)
    if to_format == formats.RICHTEXT and from_format == formats.HTML:
        removed = body_to_html(body=body, body_format=formats.RICHTEXT).removed
        if removed:
            said.extend(f"{sentence}." for sentence in removed)
    said.append("Check it before saving.")
    return FormatSwitch(body=converted, message=" ".join(said))
