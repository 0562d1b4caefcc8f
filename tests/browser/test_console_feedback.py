"""What came back after sending, in a real browser: a send's delivered / bounced / complained
counts and rates (with the warning Gmail's and Yahoo's rules call for), one delivery's
timeline, the suppression list and its search, bounce mail to review, and the channels'
health on the dashboard; no page logs a console error.

Only a live server: the rows are written directly as the sender, the event applier and the
webhooks would have left them. Screenshots: "send-feedback", "delivery-timeline",
"suppression-list", "bounce-review", "channel-health".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from campaigns.models import (
    BounceMessage,
    Campaign,
    ChannelHealth,
    Delivery,
    DeliveryEvent,
    Recipient,
    Send,
    Suppression,
)
from campaigns.selectors.dashboard import STATS_CACHE_KEY
from campaigns.selectors.system import SYSTEM_CACHE_KEY
from tests.browser.support import login, wait_for
from tests.browser.test_console_toolbar import console_errors
from tests.factories import CampaignFactory, RecipientFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def a_sent_newsletter() -> tuple[Send, Delivery]:
    """A finished send of 2000 messages that providers reported on, and one delivery that was
    deferred once, then delivered and marked as spam."""
    now = timezone.now()
    campaign = CampaignFactory.create(name="Winter newsletter", status=Campaign.Status.SENT)
    send = Send.objects.create(
        campaign=campaign,
        occurrence_key="once",
        status=Send.Status.COMPLETED,
        channel="postmark",
        total=2000,
        sent_count=2000,
        delivered_count=1950,
        soft_bounced_count=6,
        bounced_count=44,
        complained_count=7,
        unsubscribed_count=12,
        opened_count=820,
        clicked_count=130,
        created_at=now - timedelta(hours=3, minutes=1),
        started_at=now - timedelta(hours=3),
        finished_at=now - timedelta(hours=2),
    )
    _the_rest_sent(send, count=1999, at=now - timedelta(hours=2, minutes=30))
    attempt = (now - timedelta(hours=3) + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    delivery = Delivery.objects.create(
        send=send,
        recipient=RecipientFactory.create(email="ada@example.org"),
        status=Delivery.Status.SENT,
        attempts=2,
        last_error=f"attempt 1 at {attempt}: 451 4.7.1 Greylisted, please try again later",
        smtp_response="250 OK (Postmark accepted the message)",
        esp_message_id="b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
        sent_at=now - timedelta(hours=3) + timedelta(minutes=6),
        updated_at=now - timedelta(hours=3) + timedelta(minutes=6),
    )
    for minutes, kind, text, response in (
        (8, DeliveryEvent.Kind.DELIVERED, "Delivered to the mailbox", "smtp;250 2.0.0 OK"),
        (95, DeliveryEvent.Kind.COMPLAINED, "Marked as spam by the recipient", ""),
    ):
        DeliveryEvent.objects.create(
            source="postmark",
            event_key=f"{kind}-{delivery.pk}",
            kind=kind,
            message_id=delivery.esp_message_id,
            email="ada@example.org",
            delivery_id=delivery.pk,
            occurred_at=now - timedelta(hours=3) + timedelta(minutes=minutes),
            description=text,
            mta_response=response,
            payload={"RecordType": kind, "MessageID": delivery.esp_message_id},
            applied_at=now,
        )
    return send, delivery


def _the_rest_sent(send: Send, *, count: int, at: datetime) -> None:
    """The send's other rows, all sent, so its progress agrees with its counters."""
    recipients = Recipient.objects.bulk_create(
        Recipient(email=f"reader{i}@example.com", first_name="Reader") for i in range(count)
    )
    Delivery.objects.bulk_create(
        Delivery(
            send=send,
            recipient=recipient,
            status=Delivery.Status.SENT,
            attempts=1,
            smtp_response="250 OK (Postmark accepted the message)",
            sent_at=at,
            updated_at=at,
        )
        for recipient in recipients
    )


def a_suppression_list() -> None:
    now = timezone.now()
    for email, reason, detail, source, hours in (
        ("ada@example.org", "complaint", "Marked as spam by the recipient", "postmark", 1),
        ("old.box@example.org", "hard_bounce", "550 5.1.1 <old.box@example.org>: no such user",
         "bounce_mail", 5),
        ("bob@example.com", "soft_bounces", "3 soft bounces in 7 days: 452 mailbox full",
         "postmark", 30),
        ("carol@example.net", "esp_unsubscribe", "Unsubscribed through Postmark's link",
         "postmark", 80),
    ):  # fmt: skip
        row = Suppression.objects.create(email=email, reason=reason, detail=detail, source=source)
        Suppression.objects.filter(pk=row.pk).update(created_at=now - timedelta(hours=hours))


def the_channels_reports() -> None:
    now = timezone.now()
    ChannelHealth.objects.create(
        source="postmark",
        events_received=2014,
        last_event_at=now - timedelta(minutes=2),
        auth_failures=2,
        last_auth_failure_at=now - timedelta(hours=1),
        last_auth_failure="basic auth: wrong user or password",
    )
    ChannelHealth.objects.create(
        source="bounce_mail", events_received=44, last_event_at=now - timedelta(minutes=40)
    )
    BounceMessage.objects.create(
        subject="Delivery Status Notification (Delay)",
        mail_from="MAILER-DAEMON@mx.example.net",
        rcpt_to="bounces+x@bounce.example.com",
        raw=b"Subject: Delivery Status Notification\r\n\r\n<b>Still trying</b> \xff",
        status=BounceMessage.Status.NEEDS_REVIEW,
        problem="No parser recognised this report",
    )


def test_feedback_pages_read_clearly_and_log_no_errors(
    live_server: Any,
    new_page: Callable[..., Any],
    shots: Callable[[Any, str], None],
    settings: Any,
) -> None:
    settings.OPSDASH_CHANNELS = ["smtp=smtp", "postmark=postmark:broadcast"]
    settings.OPSDASH_DEFAULT_CHANNEL = "postmark"
    cache.delete_many([STATS_CACHE_KEY, SYSTEM_CACHE_KEY])
    page = new_page(viewport={"width": 1400, "height": 1500})
    errors = console_errors(page)
    UserFactory.create(username="dana", first_name="Dana", is_superuser=True)
    send, delivery = a_sent_newsletter()
    a_suppression_list()
    the_channels_reports()
    base = live_server.url
    login(page, base, "dana")

    # 1. The send's page: counts and rates, and the complaint rate over Gmail's line.
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    box = page.locator("#send-feedback")
    rates = box.locator("#send-feedback-rates").inner_text()
    assert "97.50 % of sent" in rates  # delivered 1950 of 2000
    assert "2.20 % of sent" in rates  # hard bounces: over 2 %
    assert "0.36 % of delivered" in rates  # complaints 7 of 1950
    assert "820" in rates and "130" in rates
    assert box.get_attribute("data-level") == "danger"
    assert "Gmail and Yahoo block bulk senders above 0.3 %" in box.inner_text()
    assert box.locator("[data-rate-note=bounced]").is_visible()
    shots(page, "send-feedback")
    page.goto(f"{base}/admin/campaigns/send/")
    short = page.locator("#result_list [data-feedback-short]").first.inner_text()
    assert "97.5 % delivered" in short and "complaints 0.36 %" in short

    # 2. One delivery's page, opened from the send's list of deliveries: its story in time
    #    order, the raw payload tucked away.
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    page.locator("#send-deliveries a", has_text="ada@example.org").click()
    page.wait_for_url(f"**/admin/campaigns/delivery/{delivery.pk}/change/")
    titles = page.locator("#delivery-timeline [data-title]").all_inner_texts()
    assert titles == ["Queued at launch", "Attempt 1 failed", "Sent", "Delivered", "Complaint"]
    timeline = page.locator("#delivery-timeline")
    assert "451 4.7.1 Greylisted" in timeline.inner_text()
    assert "Receiving server: smtp;250 2.0.0 OK" in timeline.inner_text()
    assert "b7bc2f4a-e38e-4336-af7d-e6c392c2f817" in timeline.inner_text()
    raw = timeline.locator("details pre").first
    assert not raw.is_visible()  # closed until asked for
    timeline.locator("details summary").first.click()
    assert raw.is_visible() and "RecordType" in raw.inner_text()
    shots(page, "delivery-timeline")

    # 3. The suppression list: reasons in words, filters, and search by a whole domain.
    page.goto(f"{base}/admin/campaigns/suppression/")
    listing = page.locator("#result_list").inner_text()
    assert "spam complaint" in listing.lower() and "hard bounce" in listing.lower()
    assert "550 5.1.1" in listing and "old.box@example.org" in listing
    shots(page, "suppression-list")
    page.fill("input[name=q]", "@example.org")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/suppression/?q=*")
    listing = page.locator("#result_list").inner_text()
    assert "ada@example.org" in listing and "bob@example.com" not in listing
    page.goto(f"{base}/admin/campaigns/suppression/?reason__exact=complaint")
    listing = page.locator("#result_list").inner_text()
    assert "ada@example.org" in listing and "old.box@example.org" not in listing

    # 4. Bounce mail for a person: counted in the sidebar, its raw text shown as text.
    page.goto(f"{base}/admin/campaigns/bouncemessage/")
    assert "Delivery Status Notification (Delay)" in page.locator("#result_list").inner_text()
    page.locator("#result_list a", has_text="Delivery Status Notification").first.click()
    page.wait_for_url("**/bouncemessage/*/change/")
    raw_text = page.locator("#bounce-raw").inner_text()
    assert "<b>Still trying</b> \ufffd" in raw_text
    assert "needs a person" in page.locator("#content").inner_text().lower()
    shots(page, "bounce-review")

    # 5. The dashboard: 30 days of feedback, and each channel's webhooks in the system panel.
    page.goto(f"{base}/admin/")
    feedback = page.locator("#dashboard-feedback")
    assert feedback.locator("[data-feedback=delivered]").inner_text() == "1950"
    assert feedback.locator("[data-feedback=complained]").get_attribute("data-level") == "danger"
    page.wait_for_selector("#channel-health [data-source=postmark]")
    postmark = page.locator("#channel-health [data-source=postmark]")
    assert postmark.get_attribute("data-auth-warn") is not None
    assert "2 webhook calls refused for bad credentials" in postmark.inner_text()
    assert "last event 2 min ago" in postmark.inner_text()
    channels = page.locator("#channels").inner_text()
    assert "postmark (postmark, stream broadcast) default" in channels
    wait_for(lambda: page.locator("#channel-health").is_visible(), timeout=10, what="the panel")
    page.locator("#system-status").scroll_into_view_if_needed()
    shots(page, "channel-health")

    assert not errors, errors
