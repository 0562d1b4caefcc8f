"""Launch: the Send for one occurrence, its Delivery rows in one statement, then dispatch."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import AuditEntry, Campaign, Delivery, Send, TaskLink
from campaigns.publishers import publish_batch
from campaigns.selectors.audiences import audience_members_sql
from campaigns.services.approval import approval_problem
from campaigns.services.audit import audit_record
from campaigns.services.channels import channel_default, channel_for, channel_names
from campaigns.services.delivery.compiled import content_of
from campaigns.services.delivery.control import send_close_if_done
from campaigns.services.delivery.dispatch import BatchPublisher, send_dispatch
from campaigns.services.delivery.state import control_set
from campaigns.services.transitions import campaign_mirror_send, campaign_move


def send_launch(
    *,
    campaign_id: int,
    occurrence_key: str,
    trigger: str,
    publish: BatchPublisher = publish_batch,
    triggered_by_id: int | None = None,
    task_id: str | None = None,
) -> Send | None:
    """Creates the Send for one occurrence and queues its deliveries; None if it exists already,
    or if the four-eyes rule no longer allows the campaign to go (edited since it was approved).

    1. Lock the campaign row so concurrent launches (and edits) of one campaign run one after
       another; refuse, audited, a campaign whose approval an edit voided since it was sent,
       or whose sending channel is no longer configured.
    2. Create the Send with the campaign's content and channel frozen in it; the (campaign,
       occurrence_key) constraint makes a repeat a no-op.
    3. Materialise every Delivery row in one INSERT ... SELECT, suppressed addresses left out.
    4. A one-off campaign shows its send as ``sending`` (through the campaign state machine).
    5. Tie the launch to its send: the launch task ``task_id`` (so the send's task results show
       it) and the "Sent" audit entry written when someone pressed Send now (so the send's
       audit trail names who sent it).
    6. After commit, publish one batch task per id range.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if Send.objects.filter(campaign=campaign, occurrence_key=occurrence_key).exists():
            return None
        if problem := approval_problem(campaign) or _channel_problem(campaign):
            audit_record(
                action=AuditEntry.Action.SEND_REFUSED,
                actor=None,
                campaign=campaign,
                changes={"occurrence": occurrence_key, "reason": problem},
            )
            if not campaign.is_recurring:  # "Send now" moved it to sending: this launch fails
                campaign_move(campaign, to=Campaign.Status.FAILED, strict=False)
            return None
        now = timezone.now()
        send = Send.objects.create(
            campaign=campaign,
            occurrence_key=occurrence_key,
            trigger=trigger,
            triggered_by_id=triggered_by_id,
            started_at=now,
            last_progress_at=now,
            content=content_of(campaign),
            channel=campaign.channel or channel_default(),
        )
        send.total, span = _materialise_deliveries(send_id=send.pk, campaign_id=campaign.pk)
        send.delivery_id_low, send.delivery_id_high = span or (None, None)
        send.save(update_fields=["total", "delivery_id_low", "delivery_id_high"])
        campaign_mirror_send(send)
        _launch_link(send=send, task_id=task_id)
        transaction.on_commit(lambda: _send_started(send_id=send.pk, publish=publish, span=span))
    if send.total == 0:
        send_close_if_done(send_id=send.pk)
    return send


def _channel_problem(campaign: Campaign) -> str:
    """Why the campaign cannot go through its channel (empty: the default), or "".

    The channel is built here as a batch would build it, so a missing ESP setting (an API key)
    fails the launch with anymail's own words instead of every batch of the send.
    """
    try:
        name = campaign.channel or channel_default()
        if name not in channel_names():
            return (
                f"the sending channel {name!r} is not configured any more (OPSDASH_CHANNELS "
                f"has {', '.join(channel_names())}); choose another channel"
            )
        channel_for(name).close()
    except ImproperlyConfigured as exc:
        return f"the sending channel cannot be used: {exc}"
    return ""


def _launch_link(*, send: Send, task_id: str | None) -> None:
    if task_id:
        TaskLink.objects.update_or_create(
            task_id=task_id,
            defaults={"kind": TaskLink.Kind.LAUNCH, "campaign_id": send.campaign_id, "send": send},
        )
    # Send now audits the press before the send exists (a launch that never runs still shows
    # who asked); its entry names the occurrence, which now has its send.
    if send.trigger == Send.Trigger.MANUAL:
        pressed = AuditEntry.objects.filter(
            campaign_id=send.campaign_id,
            action=AuditEntry.Action.SENT,
            send__isnull=True,
            changes__occurrence=send.occurrence_key,
        )
        AuditEntry.objects.filter(pk__in=pressed.order_by("-id").values("pk")[:1]).update(send=send)


def _send_started(*, send_id: int, publish: BatchPublisher, span: tuple[int, int] | None) -> None:
    # The delivery loop reads the status from the cache: a launch is a transition too.
    control_set(send_id, Send.Status.RUNNING)
    if span is not None:
        send_dispatch(send_id=send_id, publish=publish, span=span)


def _materialise_deliveries(
    *, send_id: int, campaign_id: int
) -> tuple[int, tuple[int, int] | None]:
    """Inserts the rows; returns how many, and the lowest and highest id they were given."""
    # The audience rule has one owner: the confirmation page counts over the same clause.
    members, members_params = audience_members_sql(campaign_id=campaign_id)
    d = Delivery._meta.db_table
    sql = f"""
        INSERT INTO {d}
            (send_id, recipient_id, status, attempts, last_error, smtp_response, task_id)
        SELECT %s, r.id, %s, 0, '', '', ''
        {members}
        ORDER BY r.id
    """
    params: list[Any] = [send_id, Delivery.Status.QUEUED, *members_params]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The id span comes back with the insert itself: no second pass over a million rows.
            cursor.execute(
                f"WITH ins AS ({sql} RETURNING id) SELECT COUNT(*), MIN(id), MAX(id) FROM ins",
                params,
            )
        else:
            cursor.execute(sql, params)
            cursor.execute(
                f"SELECT COUNT(*), MIN(id), MAX(id) FROM {d} WHERE send_id = %s", [send_id]
            )
        count, low, high = cursor.fetchone()
    return int(count), (int(low), int(high)) if count else None
