"""Recipients and their consent: address normalisation, unsubscribe tokens, suppression."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from campaigns.models import AuditEntry, Recipient, Send, Subscription, Suppression
from campaigns.services.audience_counts import audience_counts_changed
from campaigns.services.audit import By, acting_user, audit_record
from campaigns.services.rendering import public_url

_UNSUBSCRIBE_SALT = "opsdash.unsubscribe.v1"
# Statuses that keep an address out of every send until a person decides otherwise.
SUPPRESSED_STATUSES = (
    Recipient.Status.UNSUBSCRIBED,
    Recipient.Status.BOUNCED,
    Recipient.Status.COMPLAINED,
)
# The suppressed statuses a person may lift by asking to be subscribed again (an import with
# "resubscribe"); a spam complaint is never lifted that way.
RESUBSCRIBABLE_STATUSES = (Recipient.Status.UNSUBSCRIBED, Recipient.Status.BOUNCED)
# Both override what a person asked for (or what their mail server said), so they are
# permissions of their own, given to approvers (migration 0013), not to editors.
RESUBSCRIBE_PERMISSION = "campaigns.resubscribe_recipient"
STATUS_CHANGE_PERMISSION = "campaigns.change_recipient_status"


def actor_may(*, by: By, permission: str) -> bool:
    """Whether ``by`` holds ``permission``. ``None`` is the system itself (a management
    command, a worker acting on a person's earlier request) and may; an anonymous user may not."""
    if by is None:
        return True
    user = acting_user(by)
    return user is not None and user.has_perm(permission)


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """Trimmed, lower-cased, with an IDNA (punycode) domain; raises InvalidEmail."""
    value = raw.strip().strip("<>").strip()
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidEmail(f"'{raw}' is not an email address")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidEmail(f"'{raw}' has an invalid domain") from exc
    email = f"{local}@{domain}".lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidEmail(f"'{raw}' is not a valid email address") from exc
    return email


class InvalidToken(ValueError):
    pass


def unsubscribe_token_make(*, recipient_id: int, send_id: int) -> str:
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign(f"{recipient_id}-{send_id}")


def unsubscribe_url(*, recipient_id: int, send_id: int) -> str:
    token = unsubscribe_token_make(recipient_id=recipient_id, send_id=send_id)
    return _token_link("unsubscribe", token)


def _token_link(name: str, token: str) -> str:
    """The public URL of ``name`` for a token: ``reverse()`` made once per URL and setting, as
    every message carries two of these links and reverse() costs more than the signature."""
    prefix, suffix = _token_link_parts(
        name, settings.OPSDASH_PUBLIC_URL, get_script_prefix(), settings.ROOT_URLCONF
    )
    return f"{prefix}{token}{suffix}"


_PATH_SLOT = "__slot__"  # stands for the token in the URL reversed once


@lru_cache(maxsize=32)
def _token_link_parts(name: str, base: str, script_prefix: str, urlconf: str) -> tuple[str, str]:
    prefix, _, suffix = public_url(reverse(name, args=[_PATH_SLOT])).partition(_PATH_SLOT)
    return prefix, suffix


@dataclass(frozen=True)
class MessageLinks:
    unsubscribe_url: str
    web_version_url: str  # the message in a browser: /m/<the same token>/


def message_links(*, recipient_id: int, send_id: int) -> MessageLinks:
    """A message's unsubscribe and web-version links from one signature: both prove the same
    thing (this recipient, this send), so a message costs no second HMAC."""
    token = unsubscribe_token_make(recipient_id=recipient_id, send_id=send_id)
    return MessageLinks(
        unsubscribe_url=_token_link("unsubscribe", token),
        web_version_url=_token_link("web-version", token),
    )


@dataclass(frozen=True)
class UnsubscribeLink:
    """What a message's unsubscribe link proves: whose it is, and which send carried it."""

    recipient_id: int
    send_id: int  # 0 for a test message, which no send carried


def unsubscribe_link_read(token: str, *, purpose: str = "unsubscribe") -> UnsubscribeLink:
    """Verifies the HMAC (compared in constant time by Signer); raises InvalidToken.

    Every link ever sent is ``<recipient id>-<send id>``, so every one still reads the same.
    """
    try:
        value = signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign(token)
        recipient_id, send_id = (int(part) for part in value.split("-", 1))
    except (signing.BadSignature, ValueError) as exc:
        raise InvalidToken(f"This {purpose} link is not valid.") from exc
    return UnsubscribeLink(recipient_id=recipient_id, send_id=send_id)


class UnsubscribeScope(StrEnum):
    """What a person leaves from their unsubscribe page."""

    LISTS = "lists"  # the lists the message was sent for
    EVERYTHING = "everything"  # every list; no mail at all


# The reasons the audit trail gives for a change the person made themselves.
UNSUBSCRIBE_REASONS = {
    UnsubscribeScope.LISTS: "Unsubscribe page: from the lists this message was sent for",
    UnsubscribeScope.EVERYTHING: "Unsubscribe page: from everything",
}
ONE_CLICK_REASON = "One-click unsubscribe from the mail program (List-Unsubscribe-Post)"


def _send_or_none(send_id: int) -> Send | None:
    return Send.objects.select_related("campaign").filter(pk=send_id).first() if send_id else None


@transaction.atomic
def recipient_unsubscribe(*, recipient_id: int, send_id: int, reason: str) -> bool:
    """Unsubscribes everywhere: the address gets no more mail from any send, and leaves every
    list. Returns whether the status changed; a replay changes nothing and audits nothing, any
    other change is audited with ``reason`` and the send whose link it was."""
    changed = (
        Recipient.objects.filter(pk=recipient_id, status=Recipient.Status.ACTIVE).update(
            status=Recipient.Status.UNSUBSCRIBED, updated_at=timezone.now()
        )
        > 0
    )
    left = Subscription.objects.filter(
        recipient_id=recipient_id, status=Subscription.Status.SUBSCRIBED
    ).update(status=Subscription.Status.UNSUBSCRIBED, updated_at=timezone.now())
    if left:
        audience_counts_changed()
    if changed or left:
        changes: dict[str, object] = {"recipient": recipient_id, "reason": reason}
        if changed:
            changes.update({"from": Recipient.Status.ACTIVE, "to": Recipient.Status.UNSUBSCRIBED})
        audit_record(
            action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
            actor=None,
            send=_send_or_none(send_id),
            changes=changes,
        )
    return changed


@transaction.atomic
def recipient_unsubscribe_from_send_lists(*, recipient_id: int, send_id: int) -> int:
    """Takes the person off the lists (audiences) the send's campaign went to, keeping the
    others; audited, one entry per list left. Returns how many lists they left."""
    send = _send_or_none(send_id)
    if send is None:
        return 0
    leaving = list(
        Subscription.objects.select_for_update()
        .filter(
            recipient_id=recipient_id,
            audience__in=send.campaign.audiences.all(),
            status=Subscription.Status.SUBSCRIBED,
        )
        .values_list("pk", "audience_id")
    )
    Subscription.objects.filter(pk__in=[pk for pk, _ in leaving]).update(
        status=Subscription.Status.UNSUBSCRIBED, updated_at=timezone.now()
    )
    if leaving:
        audience_counts_changed()
    for _pk, audience_id in leaving:
        audit_record(
            action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
            actor=None,
            send=send,
            changes={
                "recipient": recipient_id,
                "audience": audience_id,
                "subscription": {
                    "from": Subscription.Status.SUBSCRIBED,
                    "to": Subscription.Status.UNSUBSCRIBED,
                },
                "reason": UNSUBSCRIBE_REASONS[UnsubscribeScope.LISTS],
            },
        )
    return len(leaving)


# What a mail server's refusal during sending puts on the suppression list.
_SUPPRESS_DETAIL = "Refused during sending: the mail server says the mailbox does not exist"


def recipient_suppress(*, recipient_ids: list[int], status: str) -> int:
    """Marks addresses as bounced or complained so no later send includes them: they go on
    the suppression list (services.suppressions, the one owner of it), audited. Returns how
    many addresses were newly suppressed."""
    # Imported here: suppressions reads this module's permission names.
    from campaigns.services.suppressions import SuppressionIn, suppressions_add

    if status not in (Recipient.Status.BOUNCED, Recipient.Status.COMPLAINED):
        raise ValueError(f"cannot suppress with status {status!r}")
    reason = (
        Suppression.Reason.REJECTED
        if status == Recipient.Status.BOUNCED
        else Suppression.Reason.COMPLAINT
    )
    emails = Recipient.objects.filter(pk__in=recipient_ids).values_list("email", flat=True)
    entries = [
        SuppressionIn(email=email, reason=reason, detail=_SUPPRESS_DETAIL, source="smtp")
        for email in emails
    ]
    return suppressions_add(entries=entries)


@transaction.atomic
def recipient_status_change(*, recipient: Recipient, status: str, by: By, reason: str = "") -> bool:
    """Changes a recipient's consent status by hand, audited; False when it already was so.

    Lifting a spam complaint overrides the strongest "no" a person can give, so complained →
    active needs a reason in words. Unsubscribing also leaves every audience, as the person's
    own unsubscribe link does. Raises PermissionDenied or ValidationError.
    """
    if not actor_may(by=by, permission=STATUS_CHANGE_PERMISSION):
        raise PermissionDenied("Changing a recipient's status needs its own permission.")
    if status not in Recipient.Status.values:
        raise ValidationError(f"{status!r} is not a recipient status.")
    reason = reason.strip()
    old = (
        Recipient.objects.select_for_update().values_list("status", flat=True).get(pk=recipient.pk)
    )
    if old == status:
        return False
    if old == Recipient.Status.COMPLAINED and status == Recipient.Status.ACTIVE and not reason:
        raise ValidationError(
            "This person marked a message as spam: say why they may be mailed again."
        )
    Recipient.objects.filter(pk=recipient.pk).update(status=status, updated_at=timezone.now())
    if status == Recipient.Status.UNSUBSCRIBED:
        Subscription.objects.filter(
            recipient_id=recipient.pk, status=Subscription.Status.SUBSCRIBED
        ).update(status=Subscription.Status.UNSUBSCRIBED, updated_at=timezone.now())
        audience_counts_changed()
    recipient.status = status
    audit_record(
        action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
        actor=by,
        changes={"recipient": recipient.pk, "from": old, "to": status, "reason": reason},
    )
    return True


@transaction.atomic
def subscription_status_change(*, subscription: Subscription, status: str, by: By) -> bool:
    """Takes one person off one list, or puts them back, by hand; audited. False when it
    already was so. Raises PermissionDenied or ValidationError.

    Both directions change what the person receives, so both take the status permission;
    putting someone back on a list is a re-subscription and takes that permission as well.
    """
    if status not in Subscription.Status.values:
        raise ValidationError(f"{status!r} is not a subscription status.")
    if not actor_may(by=by, permission=STATUS_CHANGE_PERMISSION):
        raise PermissionDenied("Changing a subscription needs the status permission.")
    if status == Subscription.Status.SUBSCRIBED and not actor_may(
        by=by, permission=RESUBSCRIBE_PERMISSION
    ):
        raise PermissionDenied("Putting someone back on a list needs the re-subscribe permission.")
    old = (
        Subscription.objects.select_for_update()
        .values_list("status", flat=True)
        .get(pk=subscription.pk)
    )
    if old == status:
        return False
    Subscription.objects.filter(pk=subscription.pk).update(status=status, updated_at=timezone.now())
    audience_counts_changed()
    subscription.status = status
    audit_record(
        action=AuditEntry.Action.RECIPIENT_STATUS_CHANGED,
        actor=by,
        changes={
            "recipient": subscription.recipient_id,
            "audience": subscription.audience_id,
            "subscription": {"from": old, "to": status},
        },
    )
    return True
