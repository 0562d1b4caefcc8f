"""A send's occurrence key in words, for labels and links that name a send.

The key is the slot a send was for (campaigns.services.scheduling and campaigns): "once" for a
one-off campaign, "cron:<ISO time>" for a slot of a recurring schedule, "manual:<minute>" for a
"Send now" of a recurring campaign. Any other key (older data, tests) is shown as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import dateformat, timezone
from django.utils.dateparse import parse_datetime

ONE_OFF = "One-off send"
_MINUTE = "j M Y, H:i T"


def occurrence_words(key: str) -> str:
    """ "once" → "One-off send"; "cron:2026-11-25T09:00:00+01:00" → "Scheduled for 25 Nov 2026,
    09:00 CET"; "manual:2026-11-25T10:03" → "Sent by hand, 25 Nov 2026, 10:03 UTC"."""
    if key == "once":
        return ONE_OFF
    kind, _, when = key.partition(":")
    moment = _moment(when) if kind in {"cron", "manual"} else None
    if moment is None:
        return key
    return f"{'Scheduled for' if kind == 'cron' else 'Sent by hand,'} {moment}"


def _moment(text: str) -> str | None:
    try:
        parsed: datetime | None = parse_datetime(text)
    except ValueError:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):  # a manual key is the UTC minute it was pressed in
        parsed = timezone.make_aware(parsed, UTC)
    return dateformat.format(timezone.localtime(parsed), _MINUTE)


def campaign_label(name: str | None) -> str:
    """ "“Spring newsletter”": a campaign as staff named it."""
    return f"“{name}”" if name else ""


def send_label(campaign_name: str | None, occurrence_key: str | None) -> str:
    """ "“Spring newsletter” · One-off send": which campaign and which of its slots."""
    words = occurrence_words(occurrence_key or "")
    name = campaign_label(campaign_name)
    return " · ".join(part for part in (name, words) if part)
