"""The audit trail in words: who acted, what happened, and the details as label/value rows.

An entry stores its details as JSON whose shape depends on the action (the fields an edit
changed, a status moving from one value to another, an import's counts). Staff read them here
as "Sent by Dana" and a small table ("Status: running → paused"), never as the raw JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import FieldDoesNotExist
from django.db import connection
from django.db.models import Q
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.utils.text import capfirst

from campaigns.models import Audience, AuditEntry, Campaign, Recipient, Send, Subscription
from campaigns.selectors.health import service_label
from campaigns.selectors.zoned import zoned

# Keys whose meaning a reader needs spelled out; any other key reads as its own words.
_KEY_LABELS = {
    "occurrence": "Occurrence (the slot this send was for)",
    "trigger": "Started by",
    "reason": "Reason",
    "schedule": "Schedule",
    "to": "Sent to",
    "task_id": "Task",
    "file": "File",
    "columns": "Columns",
    "audience": "Audience",
    "service": "Service",
    "since": "Since",
    "seconds": "Lasted",
    "approved_by": "Approval given by",
    "approved_at": "Approval given at",
    "resubscribed": "Re-subscribed",
    "recipient_ids": "Recipients (first ids)",
    "recipient": "Recipient",
    "campaign": "Campaign",
    "id": "Id",
    "now": "Campaign is now",
    "created": "Created",
    "updated": "Updated",
    "unchanged": "Unchanged",
    "skipped": "Skipped",
    "invalid": "Invalid",
}
_TRIGGERS = {"schedule": "the schedule", "manual": "Send now"}
# Read together as one "Status: before → after" row.
_MOVES = (("from", "to"),)


@dataclass(frozen=True)
class Detail:
    """One row of an entry's details table; ``url`` when the value names a page."""

    label: str
    value: str
    url: str = ""


def person_name(user: AbstractBaseUser | None) -> str:
    """A user's full name, else their username; "" for nobody."""
    if user is None:
        return ""
    full = getattr(user, "get_full_name", lambda: "")()
    return str(full).strip() or user.get_username()


# Actions a schedule takes by itself when it fires (nobody pressed a button).
_SCHEDULE_ACTIONS = frozenset({AuditEntry.Action.SENT, AuditEntry.Action.SEND_REFUSED})


def audit_actor(entry: AuditEntry) -> str:
    """Who acted, for "… by <who>": a staff member's name, "schedule", "the person themselves"
    (a consent change from the link in a message of a send), or "the system"."""
    if entry.actor_id is not None and entry.actor is not None:
        return person_name(entry.actor)
    if entry.action == AuditEntry.Action.RECIPIENT_STATUS_CHANGED and entry.send_id:
        return "the person themselves"
    if (entry.changes or {}).get("trigger") == Send.Trigger.SCHEDULE:
        return "schedule"
    send: Send | None = entry.send if entry.send_id else None
    scheduled = send is not None and send.trigger == Send.Trigger.SCHEDULE
    return "schedule" if scheduled and entry.action in _SCHEDULE_ACTIONS else "the system"


def audit_title(entry: AuditEntry) -> str:
    """ "Sent by Dana", "Sent by schedule", "Delivery interrupted: Redis unavailable"."""
    if sentence := audit_sentence(entry):
        return sentence
    return f"{action_label(entry.action)} by {audit_actor(entry)}"


def action_label(action: str) -> str:
    return str(AuditEntry.Action(action).label) if action in AuditEntry.Action.values else action


def audit_sentence(entry: AuditEntry) -> str:
    """An interruption or a recovery of delivery, or a person joining or leaving a list, in
    words; "" for every other entry."""
    changes = entry.changes or {}
    if entry.action == AuditEntry.Action.RECIPIENT_STATUS_CHANGED:
        return _list_sentence(entry)
    service = service_label(str(changes.get("service", "")))
    if entry.action == AuditEntry.Action.INTERRUPTED:
        return f"Delivery interrupted: {service} unavailable"
    if entry.action == AuditEntry.Action.RECOVERED:
        seconds = changes.get("seconds")
        after = f" after {round(float(seconds))} s" if isinstance(seconds, int | float) else ""
        return f"Delivery recovered{after} ({service})"
    return ""


def _list_sentence(entry: AuditEntry) -> str:
    """A consent entry that moved lists but not the person's own status, in words: "Left
    “News” through the unsubscribe link", "Put back on “News” by Dana". The person's status
    change (``from``/``to``) keeps its generic title: that is the change that matters most."""
    changes = entry.changes or {}
    if "to" in changes:
        return ""
    actor = audit_actor(entry)
    how = "through the unsubscribe link" if actor == "the person themselves" else f"by {actor}"
    move = changes.get("subscription")
    if not isinstance(move, dict) or "audience" not in changes:
        # An unsubscribe from everything by someone already unsubscribed: only lists changed.
        return f"Left every list {how}" if entry.send_id else ""
    name = _value("audience", changes["audience"])
    if move.get("to") == Subscription.Status.SUBSCRIBED:
        return f"Put back on “{name}” {how}"
    verb = "Left" if actor == "the person themselves" else "Taken off"
    return f"{verb} “{name}” {how}"


def audit_details(entry: AuditEntry) -> list[Detail]:
    """The entry's details as label/value rows, in the order they were recorded."""
    changes = dict(entry.changes or {})
    rows: list[Detail] = []
    for before, after in _MOVES:
        if before in changes and after in changes:
            moved = f"{_plain(changes.pop(before))} → {_plain(changes.pop(after))}"
            rows.append(Detail("Status", moved))
    if entry.recipient_id is not None:
        changes.pop("recipient", None)  # the entry links to the person already
    if "duplicated_from" in changes:  # a copy names its source, linked by the id kept with it
        source_id = changes.pop("duplicated_from_id", None)
        source = reverse("admin:campaigns_campaign_change", args=[source_id]) if source_id else ""
        rows.append(Detail("Duplicated from", f"“{changes.pop('duplicated_from')}”", source))
    for key, value in changes.items():
        rows.append(Detail(_label(entry, key), _value(key, value), _url(key, value)))
    return rows


def _url(key: str, value: Any) -> str:
    """The page a detail names: a test message's task result, an audience."""
    if key == "task_id" and isinstance(value, str) and value:
        changelist = reverse("admin:django_celery_results_taskresult_changelist")
        return f"{changelist}?{urlencode({'q': value})}"
    if key == "audience" and isinstance(value, int):
        return reverse("admin:campaigns_audience_change", args=[value])
    return ""


def audit_summary(entry: AuditEntry, *, limit: int = 160) -> str:
    """The details in one line for the list: "Status: running → paused; Reason: …"."""
    text = "; ".join(f"{row.label}: {row.value}" for row in audit_details(entry))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _label(entry: AuditEntry, key: str) -> str:
    if entry.action == AuditEntry.Action.EDITED:
        return _campaign_field_label(key)
    return _KEY_LABELS.get(key) or capfirst(key.replace("_", " "))


def _campaign_field_label(name: str) -> str:
    """An edited field by the label the campaign form gives it ("HTML body")."""
    if name == "audiences":
        return "Audiences"
    try:
        field = Campaign._meta.get_field(name)
    except FieldDoesNotExist:
        return capfirst(name.replace("_", " "))
    return capfirst(str(getattr(field, "verbose_name", name)))


def _value(key: str, value: Any) -> str:
    if key == "trigger":
        return _TRIGGERS.get(str(value), str(value))
    if key == "schedule" and value in Campaign.ScheduleKind.values:
        return str(Campaign.ScheduleKind(value).label)
    if key == "audience" and isinstance(value, int):
        name = Audience.objects.filter(pk=value).values_list("name", flat=True).first()
        return name or f"#{value} (deleted)"
    if key == "service":
        return service_label(str(value))
    if key == "seconds" and isinstance(value, int | float):
        return f"{value:.1f} s"
    if key in {"since", "approved_at"} and isinstance(value, str):
        return _time(value)
    if isinstance(value, list) and len(value) == 2 and key == "status":
        return f"{_plain(value[0])} → {_plain(value[1])}"
    if isinstance(value, dict) and {"from", "to"} <= set(value):
        return f"{_plain(value['from'])} → {_plain(value['to'])}"
    return _plain(value)


def _time(text: str) -> str:
    moment: datetime | None = parse_datetime(text) if text else None
    return zoned(moment) if moment else (text or "—")


def _plain(value: Any) -> str:
    """A JSON value as words: lists joined with commas, mappings as "key: value"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(item) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key.replace('_', ' ')}: {_plain(item)}" for key, item in value.items())
    return str(value)


def recipient_history(recipient: Recipient, *, limit: int = 50) -> list[AuditEntry]:
    """The consent changes recorded for one person, latest first: the entries naming them
    (the recipient index), and the imports that re-subscribed them by id (few entries, found
    through the action index; PostgreSQL only, where the ids are a JSON array to search)."""
    about = Q(recipient=recipient)
    if connection.vendor == "postgresql":
        about |= Q(
            action=AuditEntry.Action.RESUBSCRIBED, changes__recipient_ids__contains=[recipient.pk]
        )
    entries: Iterable[AuditEntry] = (
        AuditEntry.objects.filter(about)
        .select_related("actor", "send", "import_job")
        .order_by("-created_at", "-id")[:limit]
    )
    return list(entries)
