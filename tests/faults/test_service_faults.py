"""Redis and PostgreSQL taken away mid-send, with a real worker, beat and SMTP sink.

A brief outage of a service every send depends on must cost seconds: no recipient lost, none
sent twice, the send done within 15 s of the service returning (plus the time its remaining
messages need at its rate), and no task result left saying STARTED.
"""

from __future__ import annotations

import pytest

from campaigns.models import AuditEntry, Send, Service
from opsdash.smtp_sink import SmtpSink
from tests.faults.conftest import DEFAULT_SIZES, SMALL_BATCHES, Profile
from tests.faults.harness import (
    assert_healed,
    hold,
    recovery_start,
    recovery_wait,
    send_under_way,
    unrecorded,
    verdict,
)
from tests.outages import postgres_restart, redis_down
from tests.processes import CeleryProcess

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.django_db(transaction=True)]

REDIS_DOWN_SECONDS = 5


@pytest.mark.parametrize("profile", [SMALL_BATCHES, DEFAULT_SIZES], ids=str)
def test_redis_gone_for_seconds_and_back_empty_delays_the_send_by_seconds_only(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    beat: CeleryProcess,
    report: list[str],
    profile: Profile,
) -> None:
    send = send_under_way(smtp_sink, worker_factory, profile)

    with redis_down() as outage:  # shut down without saving: it comes back with no keys
        waiting = hold(REDIS_DOWN_SECONDS, send)
    recovery = recovery_start(smtp_sink, send, back_at=outage.back_at, rate=profile.rate)
    report.append(
        f"Redis down {outage.seconds:.1f}s; the send said it waited for {sorted(waiting)}"
    )
    recovery_wait(recovery, smtp_sink, send, [*worker_factory, beat], report)

    result = verdict(smtp_sink, send, report)
    assert_healed(send, result, recovery, recipients=profile.recipients)
    # The send page said what it waited for, and the trail tells the outage once, start to end.
    assert Service.REDIS in waiting
    assert told(send) == [AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]


@pytest.mark.parametrize("profile", [SMALL_BATCHES, DEFAULT_SIZES], ids=str)
def test_a_postgresql_fast_restart_mid_send_loses_and_duplicates_nothing(
    smtp_sink: SmtpSink,
    worker_factory: list[CeleryProcess],
    beat: CeleryProcess,
    report: list[str],
    profile: Profile,
) -> None:
    send = send_under_way(smtp_sink, worker_factory, profile)
    in_flight = unrecorded(smtp_sink, send)  # sent, not yet written: what a restart risks

    outage = postgres_restart()  # this process's connection is replaced as well
    recovery = recovery_start(smtp_sink, send, back_at=outage.back_at, rate=profile.rate)
    report.append(
        f"PostgreSQL down {outage.seconds:.1f}s; sent but not yet recorded just before: "
        f"{in_flight}; beat alive after it: {beat.alive()}"
    )
    recovery_wait(recovery, smtp_sink, send, [*worker_factory, beat], report)

    # 0 duplicates: every outcome is knowable (SMTP answered; only the database was away).
    result = verdict(smtp_sink, send, report)
    assert_healed(send, result, recovery, recipients=profile.recipients)
    assert told(send) == [AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]


def told(send: Send) -> list[str]:
    """The interruption and recovery entries of the send's audit trail, oldest first."""
    outage = [AuditEntry.Action.INTERRUPTED, AuditEntry.Action.RECOVERED]
    entries = AuditEntry.objects.filter(send=send, action__in=outage).order_by("id")
    return list(entries.values_list("action", flat=True))
