"""What the mail did after it left, from the counters the Send rows keep: delivered, bounced,
complained, unsubscribed, opened, clicked, and the rates that warn before a provider blocks.

Never from the event table: the counters are moved once per delivery by the event applier, so
one Send row (or a sum over a few) says it all without reading millions of events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db.models import QuerySet, Sum

from campaigns.models import Send

# Gmail's and Yahoo's bulk sender rules (February 2024): keep spam complaints under 0.1 %,
# never reach 0.3 %. A hard bounce rate above about 2 % marks a list as old or bought.
COMPLAINT_WARN_PERCENT = 0.1
COMPLAINT_DANGER_PERCENT = 0.3
HARD_BOUNCE_WARN_PERCENT = 2.0

COMPLAINT_DANGER_NOTE = (
    "Gmail and Yahoo block bulk senders above 0.3 % complaints: stop sending to this audience "
    "until you know why people mark the mail as spam."
)
COMPLAINT_WARN_NOTE = (
    "Above 0.1 % complaints Gmail and Yahoo start filtering bulk mail to spam; at 0.3 % they "
    "block it. Check who is on the list and whether they asked for this mail."
)
HARD_BOUNCE_NOTE = (
    "Above 2 % hard bounces the list holds many dead addresses (old or bought): providers "
    "read that as a spammer's sign. The bounced addresses are suppressed already."
)

COUNTERS = {
    "sent": "sent_count",
    "delivered": "delivered_count",
    "soft_bounced": "soft_bounced_count",
    "bounced": "bounced_count",
    "complained": "complained_count",
    "unsubscribed": "unsubscribed_count",
    "opened": "opened_count",
    "clicked": "clicked_count",
}


@dataclass(frozen=True)
class Rate:
    """One rate as the pages show it: "0.42 % of delivered", with a level when it warns."""

    key: str
    label: str
    count: int
    base: int
    base_label: str  # "sent" or "delivered": what the rate is a share of
    level: str = ""  # "", "warning" or "danger"
    note: str = ""

    @property
    def percent(self) -> float | None:
        return 100 * self.count / self.base if self.base else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "of": self.base_label,
            "percent": self.percent,
            "level": self.level,
            "note": self.note,
        }


@dataclass(frozen=True)
class Feedback:
    """The counts after sending (one send's, or a sum over several)."""

    sent: int = 0
    delivered: int = 0
    soft_bounced: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    opened: int = 0
    clicked: int = 0

    @property
    def reported(self) -> bool:
        """Whether anything came back at all (an SMTP relay without webhooks reports nothing)."""
        return any(
            (self.delivered, self.soft_bounced, self.bounced, self.complained, self.unsubscribed)
        )

    def complaint_rate(self) -> Rate:
        """Complaints per delivered message, as the providers count them; per sent message
        when nothing is reported delivered (the SMTP channel), and the label says so."""
        base, base_label = (self.delivered, "delivered") if self.delivered else (self.sent, "sent")
        rate = Rate("complained", "Complaints", self.complained, base, base_label)
        percent = rate.percent or 0.0
        if percent >= COMPLAINT_DANGER_PERCENT:
            return replace(rate, level="danger", note=COMPLAINT_DANGER_NOTE)
        if percent >= COMPLAINT_WARN_PERCENT:
            return replace(rate, level="warning", note=COMPLAINT_WARN_NOTE)
        return rate

    def hard_bounce_rate(self) -> Rate:
        rate = Rate("bounced", "Hard bounces", self.bounced, self.sent, "sent")
        if (rate.percent or 0.0) >= HARD_BOUNCE_WARN_PERCENT:
            return replace(rate, level="warning", note=HARD_BOUNCE_NOTE)
        return rate

    def rates(self) -> list[Rate]:
        return [
            Rate("delivered", "Delivered", self.delivered, self.sent, "sent"),
            self.hard_bounce_rate(),
            Rate("soft_bounced", "Soft bounces", self.soft_bounced, self.sent, "sent"),
            self.complaint_rate(),
            Rate("unsubscribed", "Unsubscribed", self.unsubscribed, self.sent, "sent"),
        ]

    @property
    def level(self) -> str:
        """The worst level among the rates: the box's colour."""
        levels = {rate.level for rate in self.rates()}
        return "danger" if "danger" in levels else "warning" if "warning" in levels else ""

    def as_dict(self) -> dict[str, Any]:
        counts = {key: getattr(self, key) for key in COUNTERS}
        return {**counts, "rates": {rate.key: rate.as_dict() for rate in self.rates()}}


def send_feedback(send: Send) -> Feedback:
    """One send's feedback from its own counters (no query)."""
    return Feedback(**{key: int(getattr(send, column)) for key, column in COUNTERS.items()})


def sends_feedback(sends: QuerySet[Send]) -> Feedback:
    """The sum over several sends' counters: one aggregate over the (small) Send table."""
    totals = sends.aggregate(**{key: Sum(column) for key, column in COUNTERS.items()})
    return Feedback(**{key: int(value or 0) for key, value in totals.items()})
