"""The audit trail: one append-only row per staff action on a campaign, send or import."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from campaigns.models import AuditEntry, Campaign, ImportJob, Send, TaskLink


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
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None,
    campaign: Campaign | None = None,
    send: Send | None = None,
    import_job: ImportJob | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    user = cast("User", actor) if actor is not None and actor.is_authenticated else None
    return AuditEntry.objects.create(
        actor=user,
        action=action,
        campaign=campaign or (send.campaign if send else None),
        send=send,
        import_job=import_job,
        changes=changes or {},
    )
