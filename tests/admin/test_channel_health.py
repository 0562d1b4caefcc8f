"""The dashboard's system panel names the sending channels and says what each provider's
webhooks (and the bounce receiver) last did, warning about recent authentication failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import ChannelHealth
from campaigns.selectors.system import (
    SYSTEM_CACHE_KEY,
    channel_health,
    configured_channels,
    system_status,
)
from campaigns.services.heartbeat import Beat, heartbeat_write

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_panel() -> Iterator[None]:
    cache.delete(SYSTEM_CACHE_KEY)  # only our key: others' runs may share this Redis
    yield
    cache.delete(SYSTEM_CACHE_KEY)


def panel(client: Client) -> str:
    response = client.get(reverse("admin-system-status"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_configured_channels_are_listed_with_the_default_marked(settings: Settings) -> None:
    settings.OPSDASH_CHANNELS = ["smtp=smtp", "transactional=postmark:outbound", "bulk=mailgun"]
    settings.OPSDASH_DEFAULT_CHANNEL = "bulk"
    lines = {line.name: line for line in configured_channels()}
    assert (lines["transactional"].backend, lines["transactional"].stream) == (
        "postmark",
        "outbound",
    )
    assert [name for name, line in lines.items() if line.default] == ["bulk"]


def test_each_source_reads_as_a_line(auditor: Client, settings: Settings) -> None:
    settings.OPSDASH_CHANNELS = ["smtp=smtp", "postmark=postmark"]
    settings.OPSDASH_DEFAULT_CHANNEL = "smtp"
    now = timezone.now()
    ChannelHealth.objects.create(
        source="postmark",
        events_received=1234,
        last_event_at=now - timedelta(minutes=3),
        rejected_payloads=2,
        last_rejected_at=now - timedelta(hours=5),
        last_rejected="not JSON",
    )
    ChannelHealth.objects.create(source="bounce_mail", events_received=7)
    page = panel(auditor)
    assert 'data-channel="smtp" data-default' in page
    assert 'data-channel="postmark"' in page and 'data-channel="postmark" data-default' not in page
    assert "last event 3 min ago" in page
    assert "1234 events received" in page
    assert "2 rejected payloads" in page and "not JSON" in page
    assert 'data-source="bounce_mail"' in page and "no event yet" in page
    assert "data-auth-warn" not in page


def test_an_authentication_failure_in_the_last_day_is_highlighted(auditor: Client) -> None:
    now = timezone.now()
    ChannelHealth.objects.create(
        source="mailgun",
        auth_failures=3,
        last_auth_failure_at=now - timedelta(hours=2),
        last_auth_failure="signature mismatch",
    )
    ChannelHealth.objects.create(
        source="postmark",
        auth_failures=1,
        last_auth_failure_at=now - timedelta(days=3),
        last_auth_failure="wrong basic auth",
    )
    lines = {line.source: line for line in channel_health(now=now)}
    assert lines["mailgun"].recent_auth_failure and not lines["postmark"].recent_auth_failure
    page = panel(auditor)
    assert '<li data-source="mailgun" data-auth-warn>' in page
    assert "3 webhook calls refused for bad credentials" in page
    assert "signature mismatch" in page and "check the webhook secret" in page
    assert '<li data-source="postmark">' in page and "wrong basic auth" in page
    assert 'data-healthy="no"' in page


@pytest.mark.services
@pytest.mark.parametrize(("hours_ago", "healthy"), [(48, True), (2, False)])
def test_only_a_recent_authentication_failure_makes_the_panel_warn(
    hours_ago: int, healthy: bool
) -> None:
    now = timezone.now()
    beat = Beat("w1@host", "worker", tuple(settings.QUEUES), 7, 2, now - timedelta(hours=1))
    heartbeat_write(beat=beat, now=now)  # a live worker on every queue: nothing else warns
    ChannelHealth.objects.create(
        source="postmark",
        auth_failures=1,
        last_auth_failure_at=now - timedelta(hours=hours_ago),
        last_auth_failure="wrong basic auth",
    )
    assert system_status(now=now)["warning"] is not healthy


def test_without_any_report_the_panel_says_so(auditor: Client) -> None:
    assert 'id="channel-health-none"' in panel(auditor)
