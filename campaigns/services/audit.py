"""The audit trail: one append-only row per staff action on a campaign, send or import."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from campaigns.models import AuditEntry, Campaign, ImportJob, Send


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
