"""The audit trail: one append-only row per staff action on a campaign, send, import or
recipient."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from campaigns.models import AuditEntry, Campaign, ImportJob, Layout, Recipient, Send, TaskLink

# Who pressed the button: a logged-in user, or nobody (a schedule, a worker, a command).
By = AbstractBaseUser | AnonymousUser | None


def acting_user(by: By) -> User | None:
    """The user behind an action, or None for the anonymous and for the system itself."""
    if by is None or not by.is_authenticated:
        return None
    return cast("User", by)


def acting_user_id(by: By) -> int | None:
    user = acting_user(by)
    return None if user is None else user.pk


def task_link_record(
    *,
    task_id: str,
    kind: str,
    campaign_id: int | None = None,
    import_job_id: int | None = None,
) -> None:
    """Ties a Celery task id to what it serves, so its TaskResult row links back (idempotent:
    Beat's task records itself when it runs, and a redelivered run records nothing new)."""
    TaskLink.objects.get_or_create(
        task_id=task_id,
        defaults={"kind": kind, "campaign_id": campaign_id, "import_job_id": import_job_id},
    )


def audit_record(
    *,
    action: AuditEntry.Action,
    actor: By,
    campaign: Campaign | None = None,
    send: Send | None = None,
    import_job: ImportJob | None = None,
    recipient: Recipient | None = None,
    layout: Layout | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Appends one entry. ``recipient`` is the person a consent change was about (their page
    lists the entries that name them); when not given, the recipient id the changes name is
    used, so every consent entry links to its person whoever wrote it."""
    changes = changes or {}
    return AuditEntry.objects.create(
        actor=acting_user(actor),
        action=action,
        campaign=campaign or (send.campaign if send else None),
        send=send,
        import_job=import_job,
        recipient_id=recipient.pk if recipient else _named_recipient(changes),
        layout=layout,
        changes=changes,
    )


def _named_recipient(changes: dict[str, Any]) -> int | None:
    """The id under ``changes["recipient"]`` when it is a recipient that exists (the entry's
    foreign key is checked by the database: a stale id must not fail the action audited)."""
    recipient_id = changes.get("recipient")
    if not isinstance(recipient_id, int) or isinstance(recipient_id, bool):
        return None
    return recipient_id if Recipient.objects.filter(pk=recipient_id).exists() else None
