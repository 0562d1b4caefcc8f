"""What a recipient's unsubscribe page says: their address, and the lists the message was for."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.models import Audience, Recipient, Subscription
from campaigns.services.audiences import UnsubscribeLink


@dataclass(frozen=True)
class UnsubscribeFacts:
    """One person as their unsubscribe link finds them."""

    email: str
    receives_mail: bool  # active: not unsubscribed, bounced or complained
    lists: tuple[str, ...]  # the message's lists this person is still on
    left_lists: tuple[str, ...]  # the message's lists this person has already left
    other_lists: tuple[str, ...]  # lists the message was not for, still subscribed

    @property
    def lists_text(self) -> str:
        return words_list(self.lists)

    @property
    def left_lists_text(self) -> str:
        return words_list(self.left_lists)

    @property
    def other_lists_text(self) -> str:
        return words_list(self.other_lists)


def unsubscribe_facts(link: UnsubscribeLink) -> UnsubscribeFacts | None:
    """The page's facts, or None when the link's recipient no longer exists."""
    recipient = Recipient.objects.filter(pk=link.recipient_id).only("email", "status").first()
    if recipient is None:
        return None
    message_lists = set(
        Audience.objects.filter(campaigns__sends__pk=link.send_id).values_list("pk", flat=True)
    )
    rows = Subscription.objects.filter(recipient_id=recipient.pk).values_list(
        "audience_id", "audience__name", "status"
    )
    lists: list[str] = []
    left: list[str] = []
    others: list[str] = []
    for audience_id, name, status in sorted(rows, key=lambda row: row[1].casefold()):
        subscribed = status == Subscription.Status.SUBSCRIBED
        if audience_id in message_lists:
            (lists if subscribed else left).append(name)
        elif subscribed:
            others.append(name)
    return UnsubscribeFacts(
        email=recipient.email,
        receives_mail=recipient.status == Recipient.Status.ACTIVE,
        lists=tuple(lists),
        left_lists=tuple(left),
        other_lists=tuple(others),
    )


def words_list(names: tuple[str, ...]) -> str:
    """“A”, “A and B”, “A, B and C”."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
