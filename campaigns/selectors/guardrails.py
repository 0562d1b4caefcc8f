"""What the guardrails measure on a send, and the sends they paused, for the pages and the
service (services/guardrails.py) alike.

A send's figures come from its counters, except the hard failures at send time: a failed row
whose recipient the failure suppressed as bounced (the mailbox does not exist). Those are
counted from the send's failed rows, which the (send, status) index finds; the guardrail only
asks when the counters alone cannot rule a trip out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from campaigns.models import Delivery, Guardrail, Recipient, Send
from campaigns.selectors.occurrence import send_label
from campaigns.selectors.zoned import zoned

APPROVE_PERMISSION = "campaigns.approve_campaign"


@dataclass(frozen=True)
class Figures:
    """A send's counts as the guardrails see them (or the part of them after a baseline)."""

    sent: int = 0  # messages that left: accepted, plus those refused as no such mailbox
    hard_failures: int = 0  # refused at send time because the mailbox does not exist
    bounced: int = 0  # hard bounces reported afterwards (events)
    complained: int = 0

    @property
    def hard_bounces(self) -> int:
        return self.hard_failures + self.bounced

    def minus(self, base: Figures) -> Figures:
        return Figures(
            sent=self.sent - base.sent,
            hard_failures=self.hard_failures - base.hard_failures,
            bounced=self.bounced - base.bounced,
            complained=self.complained - base.complained,
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Figures:
        data = data or {}
        return cls(
            **{
                name: int(data.get(name, 0))
                for name in ("sent", "hard_failures", "bounced", "complained")
            }
        )


def hard_failures_of(*, send_id: int) -> int:
    """Rows of the send that failed because the mailbox does not exist (their recipient was
    suppressed as bounced by that very failure)."""
    return Delivery.objects.filter(
        send_id=send_id, status=Delivery.Status.FAILED, recipient__status=Recipient.Status.BOUNCED
    ).count()


def send_figures(send: Send) -> Figures:
    """The send's figures now, from its counters and its hard failures."""
    hard = hard_failures_of(send_id=send.pk)
    return Figures(
        sent=send.sent_count + hard,
        hard_failures=hard,
        bounced=send.bounced_count,
        complained=send.complained_count,
    )


@dataclass(frozen=True)
class GuardrailPause:
    """Why a guardrail paused a send: what it measured against which threshold, and when."""

    send_id: int
    name: str  # the send as staff call it: "“Spring newsletter” · One-off send"
    guardrail: str  # models.Guardrail value
    label: str  # "Hard-bounce rate"
    reason: str  # the sentence stored on the send
    count: int  # bounces, complaints or deferrals measured
    base: int  # out of this many messages (or attempts, for deferrals)
    percent: float
    threshold: float
    provider: str  # deferrals: the mailbox provider's name
    since_resume: bool  # measured on the messages after an approver's resume
    at: str  # when it paused, as the pages show times

    @property
    def figures_line(self) -> str:
        """ "13 of 210 messages (6.19 %); the guardrail is 5 %" """
        unit = "attempts" if self.guardrail == Guardrail.DEFERRALS else "messages"
        return (
            f"{self.count} of {self.base} {unit} ({self.percent:.2f} %); "
            f"the guardrail is {self.threshold:g} %"
        )


def guardrail_pause_of(send: Send) -> GuardrailPause | None:
    """The guardrail pause of a paused send, or None (running, or paused by a person)."""
    if send.status != Send.Status.PAUSED or not send.guardrail:
        return None
    trip: dict[str, Any] = dict((send.guardrail_state or {}).get("trip") or {})
    return GuardrailPause(
        send_id=send.pk,
        name=send_label(send.campaign.name, send.occurrence_key),
        guardrail=send.guardrail,
        label=str(Guardrail(send.guardrail).label),
        reason=send.paused_reason,
        count=int(trip.get("count", 0)),
        base=int(trip.get("base", 0)),
        percent=float(trip.get("percent", 0.0)),
        threshold=float(trip.get("threshold", 0.0)),
        provider=str(trip.get("provider_label", "")),
        since_resume=bool(trip.get("since_resume", False)),
        at=zoned(send.guardrail_at),
    )


def guardrail_paused_sends(*, limit: int = 20) -> list[GuardrailPause]:
    """Sends a guardrail paused and nobody resumed or cancelled yet, the newest first (the
    status index finds the few paused sends)."""
    sends: QuerySet[Send] = (
        Send.objects.filter(status=Send.Status.PAUSED)
        .exclude(guardrail="")
        .select_related("campaign")
        .order_by("-guardrail_at")[:limit]
    )
    return [pause for send in sends if (pause := guardrail_pause_of(send)) is not None]


@dataclass(frozen=True)
class Acceptance:
    """An approver's resume of a guardrail pause, as the send page recalls it."""

    by: str
    at: str
    reason: str
    figures: Figures


def guardrail_acceptance_of(send: Send) -> Acceptance | None:
    accepted = (send.guardrail_state or {}).get("accepted")
    if not accepted:
        return None
    at = parse_datetime(str(accepted.get("at", "")))
    return Acceptance(
        by=str(accepted.get("by", "")),
        at=zoned(at) if isinstance(at, datetime) else "—",
        reason=str(accepted.get("reason", "")),
        figures=Figures.of(accepted),
    )
