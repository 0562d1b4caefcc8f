"""The delivery engine: launch a Send, dispatch its batches, send a batch, control, recover.

    state.py     Redis/cache values read per message: the send's control key, batch leases
    dispatch.py  id ranges of queued rows published as batch tasks (BatchPublisher)
    launch.py    send_launch: the Send and its Delivery rows in one statement, then dispatch
    batch.py     batch_deliver: claim, pace, render, send; tells its task the NextStep
    outcomes.py  BatchResult and NextStep; outcomes recorded, flushed and released in bulk
    control.py   send_pause / send_resume / send_cancel / send_close_if_done (Send state machine)
    recovery.py  deliveries_reap and sends_flag_stalled
    testmail.py  test_message_send
    compiled.py  templates compiled once per campaign version per process

The Delivery row is the truth: a batch claims its rows with a conditional UPDATE and writes
outcomes every few messages, so a killed worker re-sends at most the messages it had in flight.
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
from campaigns.services.delivery.launch import send_launch
from campaigns.services.delivery.outcomes import BatchResult, NextStep
from campaigns.services.delivery.recovery import deliveries_reap, sends_flag_stalled
from campaigns.services.delivery.state import BatchLease, batch_lease_held, send_control_state
from campaigns.services.delivery.testmail import TestMessageFailed, test_message_send

__all__ = [
    "BatchLease",
    "BatchPublisher",
    "BatchResult",
    "LaunchPublisher",
    "NextStep",
    "TestMessageFailed",
    "batch_deliver",
    "batch_lease_held",
    "deliveries_reap",
    "send_cancel",
    "send_close_if_done",
    "send_control_state",
    "send_dispatch",
    "send_launch",
    "send_pause",
    "send_resume",
    "sends_flag_stalled",
    "test_message_send",
]
