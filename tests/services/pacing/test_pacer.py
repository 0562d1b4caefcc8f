"""The pacer: one bucket per provider that adapts, and a provider never blocks another."""

from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.services.channels import ChannelResult
from campaigns.services.pacing import Provider, WaitReason
from campaigns.services.smtp import Outcome
from tests.services.pacing.helpers import pacer_for

pytestmark = pytest.mark.django_db

SENT = ChannelResult(Outcome.SENT, 250, "OK")
THROTTLED = ChannelResult(
    Outcome.TRANSIENT, 421, "4.7.0 Try again later", attempted=True, throttled=True
)


@pytest.fixture(autouse=True)
def _limits(settings: Settings) -> None:
    settings.OPSDASH_SMTP_RATE_PER_SECOND = 0
    settings.OPSDASH_SMTP_RATE_PER_HOUR = 0
    settings.OPSDASH_SMTP_RATE_PER_DAY = 0
    settings.OPSDASH_PACING_DECREASE = 0.5
    settings.OPSDASH_PACING_CUT_SECONDS = 0.0
    settings.OPSDASH_PACING = {
        **settings.OPSDASH_PACING,
        "google": (1.0, 4.0, 50.0, 0, 0),
        "microsoft": (1.0, 4.0, 50.0, 0, 0),
    }


def test_an_empty_provider_bucket_never_blocks_another_provider() -> None:
    pacer = pacer_for()

    google = [pacer.take(Provider.GOOGLE).granted for _ in range(6)]
    microsoft = [pacer.take(Provider.MICROSOFT).granted for _ in range(4)]

    assert google == [True] * 4 + [False] * 2
    assert microsoft == [True] * 4


def test_deferrals_cut_the_provider_rate_at_the_next_sync_and_success_raises_it() -> None:
    pacer = pacer_for()
    for _ in range(3):
        pacer.observe(Provider.GOOGLE, THROTTLED)
    pacer.observe(Provider.MICROSOFT, SENT)
    assert pacer.rate(Provider.GOOGLE) == 4.0  # observe only counts

    pacer.sync()

    assert pacer.rate(Provider.GOOGLE) == 2.0
    assert pacer.rate(Provider.MICROSOFT) == pytest.approx(4.25)
    # The bucket follows: two per second now, so the wait after a burst is about half a second.
    [pacer.take(Provider.GOOGLE) for _ in range(4)]
    grant = pacer.take(Provider.GOOGLE)
    assert not grant.granted and grant.reason is WaitReason.RATE and grant.wait <= 1.0


def test_a_new_pacer_of_the_channel_starts_from_the_learned_rate() -> None:
    first = pacer_for()
    first.observe(Provider.GOOGLE, THROTTLED)
    first.sync()

    again = type(first)(send=first.send, channel=first.channel)

    assert again.rate(Provider.GOOGLE) == 2.0


def test_providers_without_an_adaptive_rate_have_no_bucket() -> None:
    pacer = pacer_for()
    assert pacer.provider_buckets(Provider.OTHER) == []
    assert all(pacer.take(Provider.OTHER).granted for _ in range(100))


def test_hourly_and_daily_caps_of_a_provider_are_buckets_too(settings: Settings) -> None:
    settings.OPSDASH_PACING = {**settings.OPSDASH_PACING, "yahoo": (1.0, 100.0, 100.0, 3, 50)}
    pacer = pacer_for()

    granted = [pacer.take(Provider.YAHOO).granted for _ in range(4)]

    assert granted == [True, True, True, False]
    assert pacer.take(Provider.YAHOO).wait > 60  # the hourly cap: a long wait, not a second


@pytest.mark.parametrize(
    ("code", "text", "throttle"),
    [
        (421, "4.7.0 Try again later, closing connection.", True),
        (450, "4.7.28 Our system has detected an unusual rate of mail", True),
        (451, "4.7.1 Please slow down", True),
        (452, "4.7.0 Too many messages", True),
        (451, "4.3.0 Try again later", False),  # temporary trouble, not a request to slow down
        (450, "4.2.1 Mailbox busy", False),
        (550, "5.7.1 rate limited forever", False),
    ],
)
def test_which_smtp_replies_ask_to_slow_down(code: int, text: str, throttle: bool) -> None:
    from campaigns.services.smtp import is_throttle

    assert is_throttle(code, text) is throttle
