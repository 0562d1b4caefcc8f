"""Bounce mail: reading what comes back to the VERP addresses, and writing it for the demo."""

from campaigns.services.bounces.compose import PlayKind, Returned, bounce_compose
from campaigns.services.bounces.parse import Finding, Outcome, ParsedBounce, bounce_parse
from campaigns.services.bounces.play import (
    Played,
    bounce_play,
    returned_for_delivery,
    returned_from_raw,
)
from campaigns.services.bounces.receive import bounce_message_receive, delivery_by_message_id

__all__ = [
    "Finding",
    "Outcome",
    "ParsedBounce",
    "PlayKind",
    "Played",
    "Returned",
    "bounce_compose",
    "bounce_message_receive",
    "bounce_parse",
    "bounce_play",
    "delivery_by_message_id",
    "returned_for_delivery",
    "returned_from_raw",
]
