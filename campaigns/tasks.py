"""Thin Celery tasks: they take ids, call one service, and own the retry policy."""

from __future__ import annotations

import functools
import logging
import random
import smtplib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import amqp.exceptions
import kombu.exceptions
import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from campaigns.models import Service, TaskLink
from campaigns.publishers import publish_batch
from campaigns.services import results, retention
from campaigns.services.audit import task_link_record
from campaigns.services.campaigns import campaign_fire_scheduled
from campaigns.services.delivery import (
    BatchResult,
    DeliveryInterrupted,
    NextStep,
    batch_deliver,
    deliveries_reap,
    send_launch,
    send_quota_wait,
    send_retry_due,
    send_wait_begin,
    sends_flag_stalled,
    sends_redispatch_orphans,
    test_message_send,
)
from campaigns.services.events.apply import events_apply
from campaigns.services.guardrail_notices import guardrail_notify

logger = logging.getLogger(__name__)

# Backoff for a batch whose SMTP server is unreachable or answering 4xx: 5 s (the setting)
# doubling to 5 min, with jitter so that many batches do not retry in lockstep. After the last
# retry the rows stay queued; the stall check flags the send and dispatches them again.
BATCH_MAX_RETRIES = 12
# Waiting for a rate-limit budget or for another run of the same batch is not a failure: those
# retries have a far higher bound (Celery needs one).
BATCH_WAIT_RETRIES = 10_000


# A service that went away for a moment (Redis, the database, the broker): the task waits a
# few seconds and runs again, however often; an outage is not a failure of the task.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError,
    OperationalError,
    InterfaceError,
    DeliveryInterrupted,
    kombu.exceptions.OperationalError,
    amqp.exceptions.ConnectionError,
    ConnectionError,
)


def _backoff(retries: int) -> float:
    base: float = settings.OPSDASH_DELIVERY_RETRY_BASE_SECONDS
    doubling: int = 2**retries  # int ** int is Any to the type checker (negative powers)
    return min(300.0, base * doubling) * random.uniform(0.8, 1.2)


def _outage_countdown(retries: int) -> float:
    """1 s doubling to 5 s, with jitter: back within seconds of the service."""
    return min(5.0, 2.0**retries) * random.uniform(0.7, 1.3)


def _service_of(exc: Exception) -> str:
    if isinstance(exc, DeliveryInterrupted):
        return exc.service
    if isinstance(exc, redis.RedisError):
        return Service.REDIS
    if isinstance(exc, DatabaseError):
        return Service.DATABASE
    return Service.BROKER


def _retry_on_outage[R](body: Callable[..., R]) -> Callable[..., R]:
    """Turns a transient outage raised by a bound task's body into a short retry.

    The database connection is closed first, so the next run starts on a fresh one.
    """

    @functools.wraps(body)
    def run(self: Task[Any, Any], *args: Any, **kwargs: Any) -> R:
        try:
            return body(self, *args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            connection.close()
            countdown = _outage_countdown(self.request.retries)
            logger.warning("%s waits %.1fs for %s: %s", self.name, countdown, _service_of(exc), exc)
            raise self.retry(countdown=countdown, max_retries=BATCH_WAIT_RETRIES) from exc

    return run


@shared_task(bind=True, name="campaigns.tasks.launch_send")
@_retry_on_outage
def launch_send(
    self: Task[Any, Any],
    campaign_id: int,
    occurrence_key: str,
    trigger: str,
    triggered_by_id: int | None = None,
) -> dict[str, Any]:
    send = send_launch(
        campaign_id=campaign_id,
        occurrence_key=occurrence_key,
        trigger=trigger,
        triggered_by_id=triggered_by_id,
        publish=publish_batch,
        task_id=self.request.id,
    )
    if send is None:
        return {"launched": False, "reason": f"occurrence {occurrence_key} exists already"}
    return {"launched": True, "send_id": send.pk, "deliveries": send.total}


@shared_task(bind=True, name="campaigns.tasks.fire_scheduled_send")
@_retry_on_outage
def fire_scheduled_send(self: Task[Any, Any], campaign_id: int) -> dict[str, Any]:
    if self.request.id:
        task_link_record(
            task_id=self.request.id, kind=TaskLink.Kind.LAUNCH, campaign_id=campaign_id
        )
    send = campaign_fire_scheduled(
        campaign_id=campaign_id, publish=publish_batch, task_id=self.request.id
    )
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
    except TRANSIENT_ERRORS as exc:
        # The rows stay claimed by this task id (or queued); its next run takes them back.
        result = BatchResult(next_step=NextStep.WAIT_SERVICE, waiting_for=_service_of(exc))
        result.deferred = str(exc)[:200]
        connection.close()
        _wait_report(send_id, result.waiting_for)
    if result.next_step is NextStep.QUOTA_WAIT:
        # Nothing to retry today: the watchdog dispatches the rows once the quota renews.
        send_quota_wait(send_id=send_id, seconds=result.retry_in)
        return result.as_dict()
    countdown = _retry_countdown(self, result)
    if countdown is not None:
        send_retry_due(send_id=send_id, seconds=countdown)
        raise self.retry(countdown=countdown, max_retries=_retry_bound(result))
    return result.as_dict()


def _wait_report(send_id: int, service: str) -> None:
    """Tells the Send page which service the batch waits for; silent if that fails too."""
    if service == Service.BROKER:
        return
    try:
        send_wait_begin(send_id=send_id, service=service)
    except (DatabaseError, redis.RedisError):
        connection.close()


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
        case NextStep.WAIT_SERVICE:
            # Redis, the database or the broker went away: look again within seconds.
            return _outage_countdown(task.request.retries)
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
    # Without ``recipient_id`` the message is personalised for a sample recipient.
    reply = test_message_send(campaign_id=campaign_id, to_email=to_email, recipient_id=recipient_id)
    return {"to": to_email, "smtp": reply}


@shared_task(bind=True, name="campaigns.tasks.reap_deliveries")
@_retry_on_outage
def reap_deliveries(self: Task[Any, Any]) -> dict[str, int]:
    reaped = deliveries_reap(publish=publish_batch)
    flagged = sends_flag_stalled(publish=publish_batch)
    return {"reaped": reaped, "stalled": flagged}


@shared_task(name="campaigns.tasks.redispatch_orphans", ignore_result=True)
def redispatch_orphans() -> dict[str, int]:
    # No retry on an outage: beat runs it again in five seconds.
    return {"dispatched": sends_redispatch_orphans(publish=publish_batch)}


@shared_task(name="campaigns.tasks.apply_events", ignore_result=True)
def apply_events() -> dict[str, int]:
    # No retry on an outage: the events stay unapplied and beat runs this again in seconds.
    # No result row either: it runs about once a second while webhooks arrive.
    result = events_apply()
    return {"events": result.events, "counted": result.counted, "suppressed": result.suppressed}


@shared_task(name="campaigns.tasks.purge_task_results")
def purge_task_results() -> dict[str, int]:
    deleted = results.task_results_purge(
        older_than=timedelta(days=settings.OPSDASH_TASK_RESULT_RETENTION_DAYS)
    )
    return {"deleted": deleted}


@shared_task(name="campaigns.tasks.purge_import_files")
def purge_import_files() -> dict[str, int]:
    counts = retention.import_files_purge(
        older_than=timedelta(days=settings.OPSDASH_IMPORT_RETENTION_DAYS),
        unstarted_after=timedelta(hours=settings.OPSDASH_IMPORT_UNSTARTED_HOURS),
    )
    return counts.as_dict()


@shared_task(bind=True, name="campaigns.tasks.run_import")
@_retry_on_outage
def run_import(self: Task[Any, Any], import_job_id: int) -> dict[str, Any]:
    # Retried only on an outage: the import is one transaction, so a failure leaves nothing to
    # resume, and a job an outage stopped after its claim is finished (failed) by then.
    from campaigns.services.imports import import_job_run

    job = import_job_run(import_job_id=import_job_id)
    return {"import_job_id": job.pk, "status": job.status, "message": job.message}


@shared_task(bind=True, name="campaigns.tasks.notify_guardrail", max_retries=5)
def notify_guardrail(self: Task[Any, Any], send_id: int) -> dict[str, int]:
    # The approvers' email about a guardrail pause; an SMTP server that is away is retried
    # for a few minutes (the pause itself is on the dashboard and the send page meanwhile).
    try:
        return {"emailed": guardrail_notify(send_id=send_id)}
    except (OSError, smtplib.SMTPException) as exc:
        raise self.retry(exc=exc, countdown=30 * (self.request.retries + 1)) from exc
