"""Recovery: rows whose batch died go back to the queue; orphaned sends go on within seconds;
sends that stopped moving are flagged (the last resort)."""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import Delivery, Send, Service
from campaigns.publishers import publish_batch
from campaigns.services.broker import queue_ready_messages
from campaigns.services.delivery.dispatch import BatchPublisher, send_dispatch
from campaigns.services.delivery.lease import batch_leases_held, sends_with_live_batch
from campaigns.services.delivery.outcomes import (
    BatchResult,
    DeliveryInterrupted,
    journal_apply,
    rows_skip,
)
from campaigns.services.delivery.state import batches_alive, state_set
from campaigns.services.redisclient import redis_failed

logger = logging.getLogger(__name__)


def deliveries_reap(*, publish: BatchPublisher = publish_batch) -> int:
    """Returns rows stuck in ``sending`` past their lease to ``queued`` and re-dispatches them.

    1. Find rows in ``sending`` claimed longer ago than the lease.
    2. Leave alone the batches whose run still holds its lease (slow, e.g. rate-limited).
    3. Record what the dead runs sent but could not write (their journals).
    4. Requeue the rest and publish batches for exactly those rows of running sends.
    """
    lease = timedelta(seconds=settings.OPSDASH_DELIVERY_LEASE_SECONDS)
    # By send: a send closes only once no row is queued or sending, and (send, status) is
    # indexed, so only the open sends' rows are read.
    closed = [Send.Status.COMPLETED, Send.Status.FAILED]
    unfinished = list(Send.objects.exclude(status__in=closed).values_list("pk", flat=True))
    stale = Delivery.objects.filter(
        send_id__in=unfinished,
        status=Delivery.Status.SENDING,
        claimed_at__lt=timezone.now() - lease,
    )
    send_of = dict(stale.values_list("task_id", "send_id").distinct())  # a batch, one send
    task_ids = set(send_of)
    unlocked = task_ids - batch_leases_held(task_ids=task_ids)
    beating = batches_alive(task_ids=unlocked)
    if beating is None:  # Redis out: no heartbeat and no journal to go by; look next time
        return 0
    dead = []
    for task_id in sorted(unlocked - beating):
        try:
            journal_apply(task_id=task_id, send_id=send_of[task_id])
        except DeliveryInterrupted:
            continue  # its journal cannot be read: its rows wait rather than go out twice
        dead.append(task_id)
    reaped_rows = list(stale.filter(task_id__in=dead).values_list("id", "send_id"))
    # Checked again in the UPDATE itself: a run of one of these tasks may have claimed its
    # rows afresh (a newer claimed_at) since they were read.
    reaped = stale.filter(pk__in=[pk for pk, _ in reaped_rows], task_id__in=dead).update(
        status=Delivery.Status.QUEUED, claimed_at=None
    )
    by_send: dict[int, list[int]] = {}
    for pk, send_id in reaped_rows:
        by_send.setdefault(send_id, []).append(pk)
    for send_id, ids in by_send.items():
        status = Send.objects.filter(pk=send_id).values_list("status", flat=True).first()
        if status == Send.Status.RUNNING:
            send_dispatch(send_id=send_id, publish=publish, only_ids=ids)
        elif status == Send.Status.CANCELLED:  # queued rows in a cancelled send: skipped
            queued = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.QUEUED)
            rows_skip(
                send_id=send_id,
                rows=queued,
                result=BatchResult(),
                reason=Delivery.SkipReason.CANCELLED,
            )
    if reaped:
        logger.warning("Returned %s deliveries stuck in sending to the queue", reaped)
    return reaped


def sends_flag_stalled(*, publish: BatchPublisher = publish_batch) -> int:
    """Flags running sends with queued rows and no progress for OPSDASH_STALL_MINUTES.

    A flagged send is also re-dispatched (at most once per stall period): its batch messages
    may have been lost with a broker's state, and a second message for a range is harmless.
    A send waiting for tomorrow's warm-up quota is not stalled until its retry is due.
    """
    minutes = settings.OPSDASH_STALL_MINUTES
    now = timezone.now()
    limit = now - timedelta(minutes=minutes)
    stalled = Send.objects.filter(status=Send.Status.RUNNING, last_progress_at__lt=limit)
    # Quiet by design until its warm-up quota renews (retry_due_at): not a stall.
    stalled = stalled.exclude(waiting_for=Service.WARMUP, retry_due_at__gt=now)
    flagged = 0
    for send in stalled:
        if not Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED).exists():
            continue
        reason = (
            f"No progress since {send.last_progress_at:%Y-%m-%d %H:%M} UTC with deliveries "
            "still queued: check that a worker consumes the delivery queue and that the SMTP "
            "server answers. The queued deliveries were dispatched again."
        )
        flagged += Send.objects.filter(pk=send.pk).update(stalled_reason=reason)
        key = f"send:{send.pk}:{send.created_at.timestamp()}:redispatched"
        try:
            first = state_set(key, "1", ttl=minutes * 60, only_new=True)
        except redis.RedisError as exc:  # dispatching twice is harmless; not at all is not
            redis_failed(exc)
            first = True
        if first:
            send_dispatch(send_id=send.pk, publish=publish)
    return flagged


def sends_redispatch_orphans(*, publish: BatchPublisher = publish_batch) -> int:
    """Re-dispatches the queued rows of running sends that no batch serves; returns how many.

    A brief outage can leave a send with queued rows and no batch message left anywhere (its
    batches gave up or were acked before they ran). Every few seconds:

    1. Pick running sends with queued rows, no progress for OPSDASH_DELIVERY_ORPHAN_SECONDS,
       and no batch retry due (``retry_due_at`` null or past).
    2. Stop if the delivery queue still holds ready messages: they may be these sends' batches.
    3. Drop the sends a live batch is working on (its shared lock on the send).
    4. Claim each remaining send for the next OPSDASH_DELIVERY_ORPHAN_SECONDS (a conditional
       UPDATE of ``retry_due_at``, so two watchdogs dispatch it once) and dispatch its rows.
    """
    quiet = settings.OPSDASH_DELIVERY_ORPHAN_SECONDS
    now = timezone.now()
    due = Q(retry_due_at__isnull=True) | Q(retry_due_at__lte=now)
    queued = Delivery.objects.filter(send_id=OuterRef("pk"), status=Delivery.Status.QUEUED)
    candidates = set(
        Send.objects.filter(due, status=Send.Status.RUNNING)
        .filter(
            Q(last_progress_at__isnull=True)
            | Q(last_progress_at__lt=now - timedelta(seconds=quiet))
        )
        .filter(Exists(queued))
        .values_list("pk", flat=True)
    )
    if not candidates or queue_ready_messages(queue=settings.QUEUE_DELIVERY):
        return 0
    dispatched = 0
    for send_id in sorted(candidates - sends_with_live_batch(send_ids=candidates)):
        claimed = Send.objects.filter(due, pk=send_id).update(
            retry_due_at=now + timedelta(seconds=quiet)
        )
        if claimed:
            logger.warning("Send %s has queued deliveries and no batch: dispatching them", send_id)
            send_dispatch(send_id=send_id, publish=publish)
            dispatched += 1
    return dispatched
