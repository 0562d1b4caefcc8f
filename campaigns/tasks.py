"""Thin Celery tasks: they take ids, call one service, and own the retry policy."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from campaigns.models import TaskLink
from campaigns.publishers import publish_batch
from campaigns.services import results
from campaigns.services.audit import task_link_record
from campaigns.services.campaigns import campaign_fire_scheduled
from campaigns.services.delivery import (
    BatchResult,
    NextStep,
    batch_deliver,
    deliveries_reap,
    send_launch,
    sends_flag_stalled,
    test_message_send,
)

# Backoff for a batch whose SMTP server is unreachable or answering 4xx: 5 s (the setting)
# doubling to 5 min, with jitter so that many batches do not retry in lockstep. After the last
# retry the rows stay queued; the stall check flags the send and dispatches them again.
BATCH_MAX_RETRIES = 12
# Waiting for a rate-limit budget or for another run of the same batch is not a failure: those
# retries have a far higher bound (Celery needs one).
BATCH_WAIT_RETRIES = 10_000


def _backoff(retries: int) -> float:
    base: float = settings.OPSDASH_DELIVERY_RETRY_BASE_SECONDS
    doubling: int = 2**retries  # int ** int is Any to the type checker (negative powers)
    return min(300.0, base * doubling) * random.uniform(0.8, 1.2)


@shared_task(name="campaigns.tasks.launch_send")
def launch_send(
    campaign_id: int, occurrence_key: str, trigger: str, triggered_by_id: int | None = None
) -> dict[str, Any]:
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key=occurrence_key,
        trigger=trigger,
        triggered_by_id=triggered_by_id,
        publish=publish_batch,
    )
    if send is None:
        return {"launched": False, "reason": f"occurrence {occurrence_key} exists already"}
    return {"launched": True, "send_id": send.pk, "deliveries": send.total}


@shared_task(bind=True, name="campaigns.tasks.fire_scheduled_send")
def fire_scheduled_send(self: Task[Any, Any], campaign_id: int) -> dict[str, Any]:
    if self.request.id:
        task_link_record(
            task_id=self.request.id, kind=TaskLink.Kind.LAUNCH, campaign_id=campaign_id
        )
    send = campaign_fire_scheduled(campaign_id=campaign_id, publish=publish_batch)
    if send is None:
        return {"launched": False}
    return {"launched": True, "send_id": send.pk, "deliveries": send.total}


@shared_task(bind=True, name="campaigns.tasks.deliver_batch", max_retries=BATCH_MAX_RETRIES)
def deliver_batch(
    self: Task[Any, Any], send_id: int, first_id: int, last_id: int
) -> dict[str, Any]:
    try:
        result = batch_deliver(
            send_id=send_id, first_id=first_id, last_id=last_id, task_id=str(self.request.id)
        )
    except SoftTimeLimitExceeded:
        # The batch recorded what it sent and handed the rest back: carry on in a fresh run.
        raise self.retry(countdown=1, max_retries=BATCH_WAIT_RETRIES) from None
    countdown = _retry_countdown(self, result)
    if countdown is not None:
        raise self.retry(countdown=countdown, max_retries=_retry_bound(result))
    return result.as_dict()


def _retry_countdown(task: Task[Any, Any], result: BatchResult) -> float | None:
    """Seconds until this batch runs again; None when it is finished (done or stopped)."""
    match result.next_step:
        case NextStep.BUSY:
            # Another run of this batch (a redelivery) still works on it: look again once its
            # lease would have lapsed.
            return settings.OPSDASH_DELIVERY_HEARTBEAT_SECONDS * random.uniform(1.0, 1.3)
        case NextStep.RATE_LIMITED:
            # The requeued rows go out as soon as the rate limit has tokens for them again.
            return min(300.0, result.retry_in)
        case NextStep.BACKOFF:
            # Rows that met a transient error are queued again; this same task picks them up.
            return _backoff(task.request.retries)
    return None


def _retry_bound(result: BatchResult) -> int:
    # Waiting for the rate limit or for another run is not a failure: it ends on its own.
    if result.next_step is NextStep.BACKOFF:
        return BATCH_MAX_RETRIES
    return BATCH_WAIT_RETRIES


@shared_task(bind=True, name="campaigns.tasks.send_test_message", max_retries=3)
def send_test_message(
    self: Task[Any, Any], campaign_id: int, to_email: str, recipient_id: int | None = None
) -> dict[str, Any]:
    # ``recipient_id`` is accepted from messages published with it; tests use a sample.
    reply = test_message_send(campaign_id=campaign_id, to_email=to_email)
    return {"to": to_email, "smtp": reply}


@shared_task(name="campaigns.tasks.reap_deliveries")
def reap_deliveries() -> dict[str, int]:
    reaped = deliveries_reap(publish=publish_batch)
    flagged = sends_flag_stalled(publish=publish_batch)
    return {"reaped": reaped, "stalled": flagged}


@shared_task(name="campaigns.tasks.purge_task_results")
def purge_task_results() -> dict[str, int]:
    deleted = results.task_results_purge(
        older_than=timedelta(days=settings.OPSDASH_TASK_RESULT_RETENTION_DAYS)
    )
    return {"deleted": deleted}


@shared_task(name="campaigns.tasks.run_import")
def run_import(import_job_id: int) -> dict[str, Any]:
    # No retries: the import is one transaction, so a failure leaves nothing to resume.
    from campaigns.services.imports import import_job_run

    job = import_job_run(import_job_id=import_job_id)
    return {"import_job_id": job.pk, "status": job.status, "message": job.message}
