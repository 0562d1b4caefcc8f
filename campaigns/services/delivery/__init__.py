"""The delivery engine: launch a Send, dispatch its batches, send a batch, control, recover.

    state.py     Redis/cache values read per message: the send's control key, the journal
    lease.py     batch leases (PostgreSQL advisory locks; a cache key on SQLite)
    health.py    which service a send waits for, since when (Send fields, audit entries)
    dispatch.py  id ranges of queued rows published as batch tasks (BatchPublisher)
    launch.py    send_launch: the Send and its Delivery rows in one statement, then dispatch
    batch.py     batch_deliver: claim, pace, render, send; tells its task the NextStep
    outcomes.py  BatchResult and NextStep; outcomes recorded, flushed and released in bulk
    control.py   send_pause / send_resume / send_cancel / send_close_if_done (Send state machine)
    recovery.py  deliveries_reap, sends_redispatch_orphans and sends_flag_stalled
    testmail.py  test_message_send
    compiled.py  a send's frozen content, compiled once per send per process

The Delivery row is the truth: a batch claims its rows with a conditional UPDATE, journals each
accepted message in Redis and writes outcomes every few messages, so a killed worker or a
database restart re-sends at most the message that was in flight.
Callers outside the package import from here; modules inside import from each other directly.
"""

from campaigns.services.delivery.batch import batch_deliver
from campaigns.services.delivery.control import (
    send_cancel,
    send_close_if_done,
    send_pause,
    send_resume,
)
from campaigns.services.delivery.dispatch import BatchPublisher, LaunchPublisher, send_dispatch
from campaigns.services.delivery.health import (
    send_quota_wait,
    send_retry_due,
    send_wait_begin,
    send_wait_end,
    send_wait_marker,
)
from campaigns.services.delivery.launch import send_launch
from campaigns.services.delivery.lease import BatchLease, batch_leases_held, sends_with_live_batch
from campaigns.services.delivery.outcomes import (
    BatchResult,
    DeliveryInterrupted,
    NextStep,
    journal_apply,
)
from campaigns.services.delivery.recovery import (
    deliveries_reap,
    sends_flag_stalled,
    sends_redispatch_orphans,
)
from campaigns.services.delivery.state import send_control_state
from campaigns.services.delivery.testmail import TestMessageFailed, test_message_send

__all__ = [
    "BatchLease",
    "BatchPublisher",
    "BatchResult",
    "DeliveryInterrupted",
    "LaunchPublisher",
    "NextStep",
    "TestMessageFailed",
    "batch_deliver",
    "batch_leases_held",
    "deliveries_reap",
    "journal_apply",
    "send_cancel",
    "send_close_if_done",
    "send_control_state",
    "send_dispatch",
    "send_launch",
    "send_pause",
    "send_quota_wait",
    "send_resume",
    "send_retry_due",
    "send_wait_begin",
    "send_wait_end",
    "send_wait_marker",
    "sends_flag_stalled",
    "sends_redispatch_orphans",
    "sends_with_live_batch",
    "test_message_send",
]
