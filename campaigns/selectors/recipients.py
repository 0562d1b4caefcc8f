"""One person's page and the recipients' search: each question answered by an index.

- search: an exact address (the unique index on ``email``) or a domain ("@example.com" or
  "example.com": the expression index on the address's domain), never a scan of the table;
- subscriptions, consent history and suppression reason: small per-person lookups;
- deliveries: the latest first, through the (recipient, send) unique index of Delivery.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from campaigns.models import AuditEntry, Delivery, EmailDomain, Recipient, Subscription

RECIPIENT_PAGE_DELIVERIES = 50


class SearchKind(enum.Enum):
    ADDRESS = "address"
    DOMAIN = "domain"
    NEITHER = "neither"  # part of a name or an address: no index answers it, so nothing


@dataclass(frozen=True)
class RecipientSearch:
    """What a search box term asks for, normalised as the addresses are stored."""

    kind: SearchKind
    value: str


def recipient_search_read(term: str) -> RecipientSearch:
    """ "Ada@Example.com" → an address; "@example.com" or "example.com" → a domain. Anything
    else ("alice", "alice@") is neither, and finds nothing."""
    value = term.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    if at and local and domain:
        return RecipientSearch(SearchKind.ADDRESS, f"{local}@{_domain(domain)}".lower())
    domain = domain if at else value
    if (at and local) or "." not in domain or " " in domain:
        return RecipientSearch(SearchKind.NEITHER, value.lower())
    return RecipientSearch(SearchKind.DOMAIN, _domain(domain))


def _domain(raw: str) -> str:
    """As ``normalise_email`` stores it: lower-cased, IDNA (punycode) for non-ASCII names."""
    try:
        return raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return raw.lower()


def recipients_matching(
    queryset: QuerySet[Recipient], search: RecipientSearch
) -> QuerySet[Recipient]:
    """The recipients a search names, each kind on its own index."""
    if search.kind is SearchKind.NEITHER:
        return queryset.none()
    if search.kind is SearchKind.ADDRESS:
        return queryset.filter(email=search.value)
    # Spelled exactly as the index (Recipient.Meta), so PostgreSQL reads the index.
    return queryset.alias(email_domain=EmailDomain("email")).filter(email_domain=search.value)


def recipient_subscriptions(recipient: Recipient) -> list[Subscription]:
    """Every list the person is on or left, oldest first, with the import that added them."""
    return list(
        Subscription.objects.filter(recipient=recipient)
        .select_related("audience", "source_import")
        .order_by("created_at", "id")
    )


@dataclass(frozen=True)
class ListRow:
    """One list on a person's page, with when they joined it or left it."""

    subscription: Subscription
    subscribed: bool
    since: datetime


def subscription_rows(
    subscriptions: list[Subscription], history: list[AuditEntry]
) -> list[ListRow]:
    """Each list with the moment its current status began: for a list left, the consent
    change that took the person off (a row's ``updated_at`` moves with any save, and some
    bulk changes leave it as it was), else ``updated_at``; for a list they are on, when they
    were put back on it, else when they joined."""
    rows = []
    for sub in subscriptions:
        subscribed = sub.status == Subscription.Status.SUBSCRIBED
        moved = _moved_at(sub, history)
        since = moved or (sub.created_at if subscribed else sub.updated_at)
        rows.append(ListRow(sub, subscribed, since))
    return rows


def _moved_at(sub: Subscription, history: list[AuditEntry]) -> datetime | None:
    """When the latest consent change (history is latest first) put the row in its status."""
    leaving = sub.status == Subscription.Status.UNSUBSCRIBED
    for entry in history:
        changes: dict[str, Any] = entry.changes or {}
        move = changes.get("subscription")
        if changes.get("audience") == sub.audience_id and isinstance(move, dict):
            if move.get("to") == sub.status:
                return entry.created_at
        elif leaving and "audience" not in changes and _leaves_every_list(entry, changes):
            return entry.created_at
    return None


def _leaves_every_list(entry: AuditEntry, changes: dict[str, Any]) -> bool:
    """An unsubscribe from everything: a status change to unsubscribed, or the person's own
    link when they already were (no status move, lists only)."""
    if changes.get("to") == Recipient.Status.UNSUBSCRIBED:
        return True
    return (
        entry.action == AuditEntry.Action.RECIPIENT_STATUS_CHANGED
        and "to" not in changes
        and bool(entry.send_id)
    )


def recipient_deliveries(
    recipient: Recipient, *, limit: int = RECIPIENT_PAGE_DELIVERIES
) -> tuple[list[Delivery], bool]:
    """The person's latest deliveries (latest first) and whether there are more than ``limit``.

    Delivery has no index on the recipient alone: its unique (recipient, send) index leads with
    it, so this reads just the person's rows.
    """
    rows = list(
        Delivery.objects.filter(recipient_id=recipient.pk)
        .select_related("send__campaign")
        .only(
            "id",
            "status",
            "sent_at",
            "updated_at",
            "last_error",
            "attempts",
            "send__id",
            "send__occurrence_key",
            "send__created_at",
            "send__campaign__id",
            "send__campaign__name",
        )
        .order_by("-id")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


@dataclass(frozen=True)
class Suppression:
    """Why mail no longer goes to this person, as far as the records tell."""

    status: str  # a Recipient.Status value other than active
    reason: str
    since: datetime | None
    by: AuditEntry | None  # the consent change that said so, when a person made it


_NO_REASON = {
    Recipient.Status.UNSUBSCRIBED: "Unsubscribed (through the link in a message, or an import)",
    Recipient.Status.BOUNCED: "Their mail server refused the address",
    Recipient.Status.COMPLAINED: "They marked a message as spam",
}


def recipient_suppression(recipient: Recipient, history: list[AuditEntry]) -> Suppression | None:
    """The reason the person is suppressed: the consent change that made them so (with its
    reason), else a bounce's answer from the mail server, else what their status means."""
    if recipient.status == Recipient.Status.ACTIVE:
        return None
    for entry in history:  # latest first
        changes: dict[str, Any] = entry.changes or {}
        if changes.get("to") == recipient.status:
            reason = str(changes.get("reason") or "") or _NO_REASON[_status(recipient)]
            return Suppression(recipient.status, reason, entry.created_at, entry)
    if recipient.status == Recipient.Status.BOUNCED and (failed := _last_failure(recipient)):
        return Suppression(recipient.status, failed.last_error, failed.updated_at, None)
    return Suppression(recipient.status, _NO_REASON[_status(recipient)], None, None)


def _status(recipient: Recipient) -> Recipient.Status:
    return Recipient.Status(recipient.status)


def _last_failure(recipient: Recipient) -> Delivery | None:
    return (
        Delivery.objects.filter(recipient_id=recipient.pk, status=Delivery.Status.FAILED)
        .exclude(last_error="")
        .only("last_error", "updated_at")
        .order_by("-id")
        .first()
    )


def attribute_rows(attributes: Any) -> list[tuple[str, str]]:
    """A recipient's attributes as (name, value) rows, sorted by name; nested values in words."""
    if not isinstance(attributes, dict):
        return [("value", str(attributes))] if attributes not in (None, "") else []
    return [(str(key), _words(value)) for key, value in sorted(attributes.items())]


def _words(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_words(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_words(item)}" for key, item in value.items())
    return str(value)
