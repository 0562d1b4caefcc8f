"""Staff-facing control of a running send: the delivery engine's transitions plus the audit trail.

The transitions themselves live in services.delivery (the engine owns the state machine); these
wrappers add who pressed the button, so the admin records every pause, resume and cancel.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from campaigns.models import AuditEntry, Send
from campaigns.services import delivery
from campaigns.services.audit import audit_record
from campaigns.services.delivery import BatchPublisher

User = AbstractBaseUser | AnonymousUser | None


def _record(send: Send, *, action: AuditEntry.Action, by: User, before: str) -> None:
    audit_record(action=action, actor=by, send=send, changes={"status": [before, send.status]})


def _status(send_id: int) -> str:
    return Send.objects.values_list("status", flat=True).get(pk=send_id)


@transaction.atomic
def send_pause_by(*, send_id: int, by: User) -> Send:
    before = _status(send_id)
    send = delivery.send_pause(send_id=send_id)
    _record(send, action=AuditEntry.Action.PAUSED, by=by, before=before)
    return send


@transaction.atomic
def send_resume_by(*, send_id: int, by: User, publish: BatchPublisher) -> Send:
    before = _status(send_id)
    send = delivery.send_resume(send_id=send_id, publish=publish)
    _record(send, action=AuditEntry.Action.RESUMED, by=by, before=before)
    return send


@transaction.atomic
def send_cancel_by(*, send_id: int, by: User) -> Send:
    before = _status(send_id)
    send = delivery.send_cancel(send_id=send_id)
    _record(send, action=AuditEntry.Action.CANCELLED, by=by, before=before)
    return send
