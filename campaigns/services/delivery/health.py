"""Which service a send's batches wait for, and since when: written here, shown by the pages.

A Redis outage is written to the Send at once (the database answers). A database outage cannot
be, so it is kept in Redis (``<prefix>:delivery:send:<id>:waiting`` = ``database|<iso time>``)
and copied to the Send as soon as the database answers again. The first progress of a batch
once the service is back clears the fields; both moments go to the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import redis
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from campaigns.models import AuditEntry, Send, Service
from campaigns.services.audit import audit_record
from campaigns.services.delivery.state import state_delete, state_get, state_set
from campaigns.services.redisclient import REDIS_RECHECK_SECONDS, redis_failed

MARKER_TTL = 86_400
# A process that saw Redis fail leaves it alone this long, so its view can lag another
# process's recovery by as much: a report within it is the tail of the outage just ended.
_VIEW_LAG = timedelta(seconds=REDIS_RECHECK_SECONDS + 1)


def _marker_key(send_id: int) -> str:
    return f"send:{send_id}:waiting"


def send_wait_marker(*, send_id: int) -> tuple[str, datetime | None]:
    """The outage kept in Redis for a send (service, since); ("", None) when none or unknown."""
    try:
        value = state_get(_marker_key(send_id))
    except redis.RedisError as exc:
        redis_failed(exc)
        return "", None
    if not value or "|" not in value:
        return "", None
    service, since = value.split("|", 1)
    try:
        return service, datetime.fromisoformat(since)
    except ValueError:
        return service, None


def send_wait_begin(*, send_id: int, service: str, since: datetime | None = None) -> None:
    """Records that a send's batches wait for ``service`` since ``since`` (now when not given);
    the first report wins."""
    now = since or timezone.now()
    if service == Service.DATABASE:
        try:
            value = f"{service}|{now.isoformat()}"
            state_set(_marker_key(send_id), value, ttl=MARKER_TTL, only_new=True)
        except redis.RedisError as exc:  # both out: the pages find out from the task results
            redis_failed(exc)
        return
    _fields_set(send_id=send_id, service=service, since=now)


def send_wait_sync(*, send_id: int) -> bool:
    """Copies a database outage kept in Redis to the Send, once the database answers."""
    service, since = send_wait_marker(send_id=send_id)
    if not service:
        return False
    _fields_set(send_id=send_id, service=service, since=since or timezone.now())
    return True


def _fields_set(*, send_id: int, service: str, since: datetime) -> None:
    if _recovered_lately(send_id=send_id, service=service, now=since):
        return
    with transaction.atomic():
        marked = Send.objects.filter(pk=send_id, waiting_for="").update(
            waiting_for=service, waiting_since=since
        )
        if marked:
            send = Send.objects.select_related("campaign").get(pk=send_id)
            changes = {"service": service, "since": since.isoformat()}
            audit_record(
                action=AuditEntry.Action.INTERRUPTED, actor=None, send=send, changes=changes
            )


def _recovered_lately(*, send_id: int, service: str, now: datetime) -> bool:
    return AuditEntry.objects.filter(
        send_id=send_id,
        action=AuditEntry.Action.RECOVERED,
        changes__service=service,
        created_at__gte=now - _VIEW_LAG,
    ).exists()


def send_wait_end(*, send_id: int) -> bool:
    """Clears the waiting state once a batch makes progress again; returns whether it was set."""
    if send_wait_sync(send_id=send_id):
        try:  # gone before the fields are cleared, so no batch copies it to the Send again
            state_delete(_marker_key(send_id))
        except redis.RedisError as exc:
            redis_failed(exc)
    now = timezone.now()
    with transaction.atomic():
        send = Send.objects.select_for_update().select_related("campaign").get(pk=send_id)
        service, since = send.waiting_for, send.waiting_since
        if not service:
            return False
        Send.objects.filter(pk=send_id).update(waiting_for="", waiting_since=None)
        seconds = round((now - since).total_seconds(), 1) if since else None
        changes = {
            "service": service,
            "since": since.isoformat() if since else "",
            "seconds": seconds,
        }
        audit_record(action=AuditEntry.Action.RECOVERED, actor=None, send=send, changes=changes)
    return True


def send_retry_due(*, send_id: int, seconds: float) -> None:
    """Tells the watchdog a batch of this send runs again in ``seconds``: until then its queued
    rows are not orphans. Silent while the database is out (the watchdog cannot run either)."""
    due = timezone.now() + timedelta(seconds=seconds)
    try:
        Send.objects.filter(pk=send_id).update(
            retry_due_at=Greatest(Coalesce(F("retry_due_at"), due), due)
        )
    except DatabaseError:
        connection.close()


def send_quota_wait(*, send_id: int, seconds: float) -> None:
    """The send waits for tomorrow's warm-up quota: shown on its page instead of a stall, and
    its queued rows are dispatched again by the watchdog once the quota renews."""
    send_retry_due(send_id=send_id, seconds=seconds)
    send_wait_begin(send_id=send_id, service=Service.WARMUP)
