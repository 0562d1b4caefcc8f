"""The send page tells the truth while a send runs, in a real browser against the real stack.

A campaign to 60 recipients, paced at 30 a minute, is delivered by a real worker to a local SMTP
sink. Its send's page counts up on its own (no reload); Cancel first confirms how many will be
skipped, and afterwards the page says how many were sent and how many skipped and why, in numbers
that add up and match the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from campaigns.models import Delivery, Send
from campaigns.services.campaigns import campaign_send_now
from opsdash.smtp_sink import SmtpSink
from tests.browser.support import action, login, wait_for
from tests.factories import CampaignFactory, UserFactory, audience_with
from tests.processes import CeleryProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS = 60
PER_MINUTE = 30  # a burst of 30, then one every two seconds: the send runs for about a minute


def count(page: Any, name: str) -> int:
    return int(page.locator(f"[data-count={name}]").inner_text())


def row_counts(send: Send) -> dict[str, int]:
    rows = Delivery.objects.filter(send=send)
    return {status: rows.filter(status=status).count() for status in Delivery.Status.values}


def test_the_send_page_moves_on_its_own_and_tells_what_cancel_left(
    live_server: Any,
    smtp_sink: SmtpSink,
    worker: CeleryProcess,
    page: Any,
    shots: Callable[[Any, str], None],
) -> None:
    user = UserFactory.create(username="dana", is_superuser=True, first_name="Dana")
    campaign = CampaignFactory.create(
        name="Paced newsletter",
        audiences=[audience_with(RECIPIENTS)],
        rate_limit_per_minute=PER_MINUTE,
    )
    campaign_send_now(campaign=campaign, by=user)
    send = wait_for(
        lambda: Send.objects.filter(campaign=campaign).first(), timeout=60, what="the launch"
    )
    base = live_server.url
    login(page, base, "dana")

    # 1. While it runs, the counts go up without a reload.
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    page.evaluate("window.sendPageLoadedOnce = true")
    wait_for(lambda: count(page, "sent") > 0, timeout=60, what="a first message on the page")
    first = count(page, "sent")
    wait_for(lambda: count(page, "sent") > first, timeout=30, what="the count to move on its own")
    assert page.evaluate("window.sendPageLoadedOnce === true"), "the page reloaded"
    second = count(page, "sent")
    assert first < second < RECIPIENTS, (first, second)
    assert count(page, "total") == RECIPIENTS
    assert re.search(rf"\d+ of {RECIPIENTS} handled: \d+ sent, \d+ not sent yet", page.content())
    page.wait_for_selector("[data-send-live=deliveries] tr[data-status=sent]")
    shots(page, "send-live")

    # 2. Cancel first says what it will do, with the counts; nothing happens until confirmed.
    action(page, "Cancel")
    page.wait_for_selector("#campaign-confirm[data-control=cancel]")
    shown = int(page.locator("#confirm-recipients").get_attribute("data-count"))
    sent_before = int(page.locator("#confirm-already-sent").get_attribute("data-count"))
    assert shown + sent_before <= RECIPIENTS and shown > 0, (shown, sent_before)
    assert "subscribed" in page.locator("#confirm-audiences").inner_text()
    assert "SMTP relay" in page.locator("#confirm-channel").inner_text()
    shots(page, "send-cancel-confirm")
    assert Send.objects.get(pk=send.pk).status == Send.Status.RUNNING

    # 3. Confirmed: what was sent stays sent, the rest is skipped with its reason.
    page.locator("#confirm-submit").click()
    page.wait_for_selector("text=Cancelled: the recipients not yet sent are marked skipped.")
    send.refresh_from_db()
    assert send.status == Send.Status.CANCELLED

    def settled() -> bool:
        # The message in flight at the moment of cancel lands within the page's settle window.
        rows = row_counts(send)
        if rows[Delivery.Status.SENDING] or rows[Delivery.Status.QUEUED]:
            return False
        shown = (count(page, "sent"), count(page, "skipped"))
        return shown == (rows[Delivery.Status.SENT], rows[Delivery.Status.SKIPPED])

    wait_for(settled, timeout=30, what="the page to show the rows as written")
    sent, skipped = count(page, "sent"), count(page, "skipped")
    summary = page.locator("[data-send-summary]").inner_text()
    assert sent + skipped == count(page, "total") == RECIPIENTS, summary
    assert 0 < sent < RECIPIENTS, summary
    # The rows queued when the confirmation was drawn may have moved on by a batch since: the
    # skipped never exceed what it announced.
    assert skipped <= shown, (skipped, shown)
    assert summary == (
        f"{RECIPIENTS} of {RECIPIENTS} handled: {sent} sent, "
        f"{skipped} skipped (cancelled before sending)"
    )
    reasons = page.locator("[data-send-skip-reasons]").inner_text()
    assert f"Skipped: {skipped} cancelled before sending" in reasons
    page.wait_for_selector("[data-send-live=deliveries] [data-skip-reason=cancelled]")
    shots(page, "send-cancelled")

    # 4. The database agrees: rows and counters.
    send.refresh_from_db()
    counters = (send.sent_count, send.failed_count, send.skipped_count)
    assert counters == (sent, 0, skipped), (counters, row_counts(send))
    skipped_rows = Delivery.objects.filter(send=send, status=Delivery.Status.SKIPPED)
    assert set(skipped_rows.values_list("skip_reason", flat=True)) == {"cancelled"}
    delivered = [m for m in smtp_sink.messages if m["Subject"].startswith("Hello ")]
    assert len(delivered) == sent, (len(delivered), sent)
