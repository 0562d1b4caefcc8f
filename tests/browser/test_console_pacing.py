"""Pacing and warm-up in a real browser: the dashboard's panel per mailbox provider, the
warm-up list and plan editor, and a send waiting for tomorrow's quota.

Screenshots: "dashboard-pacing", "warmup-list", "warmup-plan-editor" and "send-warmup-wait",
written to OPSDASH_SCREENSHOT_DIR when it is set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from campaigns.models import Delivery, Recipient, Send, Warmup, WarmupPlan
from campaigns.selectors.dashboard import STATS_CACHE_KEY
from campaigns.selectors.pacing import PACING_CACHE_KEY
from campaigns.services.channels.smtp import SmtpChannel
from campaigns.services.delivery import send_quota_wait
from campaigns.services.pacing import Pacer, Provider
from campaigns.services.pacing.aimd import Tally, tallies_apply
from campaigns.services.redisclient import redis_client
from tests.browser.support import login
from tests.factories import CampaignFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def running_send(queued: dict[str, int]) -> Send:
    """A running send from a warming-up domain, with deliveries queued per domain."""
    campaign = CampaignFactory.create(name="Winter sale", from_email="Shop <news@shop.example.com>")
    send = Send.objects.create(
        campaign=campaign, occurrence_key="once", status=Send.Status.RUNNING, channel="smtp"
    )
    for domain, count in queued.items():
        recipients = Recipient.objects.bulk_create(
            Recipient(email=f"r{i}@{domain}") for i in range(count)
        )
        Delivery.objects.bulk_create(Delivery(send=send, recipient=r) for r in recipients)
    Send.objects.filter(pk=send.pk).update(total=sum(queued.values()))
    return send


def forget_learned_rates() -> None:
    """This run's pacing state only (its own Redis prefix): other tests' sends leave theirs."""
    client = redis_client()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:pacing:*", count=500):
        client.delete(key)


def test_staff_see_each_provider_pace_and_the_warm_up_day_by_day(
    live_server: Any, page: Any, shots: Callable[[Any, str], None]
) -> None:
    UserFactory.create(username="dana", is_superuser=True, first_name="Dana")
    plan = WarmupPlan.objects.get_or_create(
        name="Standard 30 days",
        defaults={"daily_limits": [50 * 2**i for i in range(10)] + [50_000] * 20},
    )[0]
    Warmup.objects.create(
        target="shop.example.com",
        plan=plan,
        started_on=timezone.localdate() - timedelta(days=2),
    )
    send = running_send({"gmail.com": 120, "hotmail.co.uk": 40, "yahoo.com": 25, "acme.org": 15})
    # What the workers learned: Google deferred some and slowed down, Microsoft sped up.
    forget_learned_rates()
    tallies_apply("smtp", {Provider.GOOGLE: Tally(ok=180, deferred=12)})
    tallies_apply("smtp", {Provider.MICROSOFT: Tally(ok=300)})
    tallies_apply("smtp", {Provider.OTHER: Tally(ok=40)})
    pacer = Pacer(
        send=Send.objects.select_related("campaign").get(pk=send.pk), channel=SmtpChannel("smtp")
    )
    # Day 3 of the plan allows 200 per provider: Google's are all taken, Microsoft has room.
    assert pacer.take(Provider.GOOGLE, 200).granted and pacer.take(Provider.MICROSOFT, 80).granted
    assert not pacer.take(Provider.GOOGLE, 1).granted
    send_quota_wait(send_id=send.pk, seconds=3600 * 5)
    cache.delete_many([STATS_CACHE_KEY, PACING_CACHE_KEY])
    base = live_server.url
    login(page, base, "dana")

    # 1. The dashboard: each provider's rate, its deferrals and what is queued for it.
    panel = page.locator("#dashboard-pacing")
    panel.scroll_into_view_if_needed()
    assert page.locator("[data-pacing-queued=google]").inner_text() == "120"
    assert page.locator("[data-pacing-queued=microsoft]").inner_text() == "40"
    assert page.locator("[data-pacing-queued=other]").inner_text() == "15"
    assert "/s" in page.locator("[data-pacing-rate=google]").inner_text()
    assert "6.3 % (12 of 192)" in page.locator("[data-pacing-deferred=google]").inner_text()
    assert "no provider limit" in page.locator("[data-pacing-rate=other]").inner_text()
    assert page.locator("[data-pacing-warmups='1']").is_visible()
    shots(page, "dashboard-pacing")

    # 2. The warm-up list: day 3 of 30, today's limit and what each provider got today.
    page.locator("[data-pacing-warmups='1']").click()
    page.wait_for_url(f"{base}/admin/campaigns/warmup/")
    row = page.locator("#result_list tbody tr").first.inner_text()
    assert "day 3 of 30" in row and "200 per provider" in row
    assert "Google: 200" in row and "Microsoft: 80" in row
    shots(page, "warmup-list")

    # 3. The plan editor says which day is wrong.
    page.goto(f"{base}/admin/campaigns/warmupplan/{plan.pk}/change/")
    page.fill("textarea[name=daily_limits]", "50, 100, 80, 400")
    page.locator("button[name=_save], input[name=_save]").first.click()
    page.wait_for_selector("text=Day 3: 80 is less than day 2's 100")
    shots(page, "warmup-plan-editor")

    # 4. The send page says what the send waits for, and when it goes on.
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    waiting = page.locator("[data-send-waiting=warmup]").first
    assert "Waiting for the warm-up quota since" in waiting.inner_text()
    assert "next try at" in waiting.inner_text()
    shots(page, "send-warmup-wait")
