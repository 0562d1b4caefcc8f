"""The one place services reach Celery: each function publishes one task by its ids.

Services take these as defaults (tests may pass their own), so neither the admin nor a service
imports ``campaigns.tasks``. The tasks module imports services, hence the import inside each
function: it runs when a message is published, long after both modules are loaded.
"""

from __future__ import annotations

import uuid

from campaigns.models import TaskLink
from campaigns.services.audit import task_link_record


def publish_batch(send_id: int, first_id: int, last_id: int, task_id: str) -> None:
    from campaigns.tasks import deliver_batch

    deliver_batch.apply_async(
        kwargs={"send_id": send_id, "first_id": first_id, "last_id": last_id}, task_id=task_id
    )


def publish_launch(
    campaign_id: int, occurrence_key: str, trigger: str, triggered_by_id: int | None
) -> None:
    from campaigns.tasks import launch_send

    task_id = str(uuid.uuid4())
    task_link_record(task_id=task_id, kind=TaskLink.Kind.LAUNCH, campaign_id=campaign_id)
    launch_send.apply_async(
        kwargs={
            "campaign_id": campaign_id,
            "occurrence_key": occurrence_key,
            "trigger": trigger,
            "triggered_by_id": triggered_by_id,
        },
        task_id=task_id,
    )


def publish_test_message(
    *, campaign_id: int, to_email: str, task_id: str | None = None, recipient_id: int | None = None
) -> str:
    """Publishes a test message; ``task_id`` lets a caller that publishes after commit name the
    task before it exists, so the page can follow it at once."""
    from campaigns.tasks import send_test_message

    task_id = task_id or str(uuid.uuid4())
    task_link_record(task_id=task_id, kind=TaskLink.Kind.TEST, campaign_id=campaign_id)
    send_test_message.apply_async(
        kwargs={"campaign_id": campaign_id, "to_email": to_email, "recipient_id": recipient_id},
        task_id=task_id,
    )
    return task_id


def publish_import(import_job_id: int) -> str:
    from campaigns.tasks import run_import

    task_id = str(uuid.uuid4())
    task_link_record(task_id=task_id, kind=TaskLink.Kind.IMPORT, import_job_id=import_job_id)
    run_import.apply_async(kwargs={"import_job_id": import_job_id}, task_id=task_id)
    return task_id


def publish_guardrail_notice(send_id: int) -> None:
    """The approvers' email about a send a guardrail paused. No publish retries: the worker
    that paused the send must not wait on a broker that is away."""
    from campaigns.tasks import notify_guardrail

    notify_guardrail.apply_async(kwargs={"send_id": send_id}, retry=False)
