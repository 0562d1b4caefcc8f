"""A delivery's page tells its story in time order: queued at launch, each attempt and the
server's answer, sent (or failed, or skipped and why), then what the provider reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Delivery, DeliveryEvent, Send
from campaigns.selectors.deliveries import delivery_timeline
from tests.factories import CampaignFactory, RecipientFactory

pytestmark = pytest.mark.django_db

LAUNCH = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)


def a_delivery(**fields: object) -> Delivery:
    campaign = CampaignFactory.create(name="Winter news")
    send = Send.objects.create(campaign=campaign, occurrence_key="once", started_at=LAUNCH)
    return Delivery.objects.create(send=send, recipient=RecipientFactory.create(), **fields)


def an_event(delivery: Delivery, kind: str, minutes: int, **fields: object) -> DeliveryEvent:
    return DeliveryEvent.objects.create(
        source="postmark",
        event_key=f"{kind}-{minutes}",
        kind=kind,
        delivery_id=delivery.pk,
        occurred_at=LAUNCH + timedelta(minutes=minutes),
        **fields,
    )


def a_retried_delivery() -> Delivery:
    """Deferred twice, then sent through an ESP, then delivered and complained about."""
    delivery = a_delivery(
        status=Delivery.Status.SENT,
        attempts=3,
        last_error=(
            "attempt 1 at 2026-11-25 18:01:00: 451 4.7.1 Greylisted, try again\n"
            "attempt 2 at 2026-11-25 18:06:00: 421 4.4.2 Connection dropped"
        ),
        smtp_response="250 2.0.0 OK queued as 7F3A",
        sent_at=LAUNCH + timedelta(minutes=11),
        esp_message_id="b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
    )
    an_event(
        delivery,
        DeliveryEvent.Kind.COMPLAINED,
        40,
        description="Marked as spam",
        payload={"RecordType": "SpamComplaint", "Email": "x@example.com"},
    )
    an_event(
        delivery,
        DeliveryEvent.Kind.DELIVERED,
        12,
        description="Delivered to the mailbox",
        mta_response="smtp;250 2.6.0 message received",
    )
    return delivery


def test_the_timeline_runs_in_time_order_from_launch_to_the_complaint() -> None:
    entries = delivery_timeline(a_retried_delivery())
    titles = [entry.title for entry in entries]
    assert titles == [
        "Queued at launch",
        "Attempt 1 failed",
        "Attempt 2 failed",
        "Sent",
        "Delivered",
        "Complaint",
    ]
    assert entries[1].at == LAUNCH + timedelta(minutes=1)
    assert entries[1].text == "451 4.7.1 Greylisted, try again"
    assert "250 2.0.0 OK queued as 7F3A" in entries[3].text
    assert entries[4].response == "smtp;250 2.6.0 message received"
    assert entries[4].source == "postmark" and entries[4].level == "success"
    assert entries[5].level == "danger" and '"RecordType": "SpamComplaint"' in entries[5].payload


def test_a_skipped_delivery_says_why() -> None:
    delivery = a_delivery(
        status=Delivery.Status.SKIPPED,
        skip_reason=Delivery.SkipReason.UNSUBSCRIBED,
        updated_at=LAUNCH + timedelta(minutes=3),
    )
    last = delivery_timeline(delivery)[-1]
    assert last.title == "Skipped"
    assert last.text == "Not sent: unsubscribed during the send."


def test_a_delivery_that_failed_for_good_shows_the_last_answer() -> None:
    delivery = a_delivery(
        status=Delivery.Status.FAILED,
        attempts=1,
        last_error="attempt 1 at 2026-11-25 18:01:00: 550 5.1.1 No such user",
        smtp_response="550 5.1.1 No such user",
        updated_at=LAUNCH + timedelta(minutes=1),
    )
    entries = delivery_timeline(delivery)
    assert [entry.title for entry in entries][-1] == "Failed for good"
    assert entries[-1].text == "550 5.1.1 No such user" and entries[-1].level == "danger"


def test_a_line_of_last_error_in_another_shape_is_shown_rather_than_lost() -> None:
    delivery = a_delivery(last_error="Connection refused by the relay")
    assert "Connection refused by the relay" in [e.text for e in delivery_timeline(delivery)]


def test_the_delivery_page_reads_as_a_timeline_with_the_payload_tucked_away(
    auditor: Client,
) -> None:
    delivery = a_retried_delivery()
    DeliveryEvent.objects.create(
        source="bounce_mail",
        event_key="other",
        kind=DeliveryEvent.Kind.BOUNCED,
        delivery_id=delivery.pk + 1000,  # another delivery's: not on this page
    )
    url = reverse("admin:campaigns_delivery_change", args=[delivery.pk])
    page = auditor.get(url).content.decode()
    assert 'id="delivery-timeline"' in page
    order = [page.index(text) for text in ("Queued at launch", "Attempt 2 failed", "Complaint")]
    assert order == sorted(order)
    assert "Receiving server: smtp;250 2.6.0 message received" in page
    assert "reported by postmark" in page and "reported by bounce_mail" not in page
    assert "<details" in page and "Details as received" in page
    assert "&quot;RecordType&quot;: &quot;SpamComplaint&quot;" in page  # escaped, not raw JSON
    assert "data-esp-message-id>b7bc2f4a-e38e-4336-af7d-e6c392c2f817" in page


def test_the_timeline_reads_the_events_of_its_delivery_by_the_index() -> None:
    delivery = a_retried_delivery()
    with CaptureQueriesContext(connection) as queries:
        delivery_timeline(delivery)
    event_queries = [q["sql"] for q in queries if "campaigns_deliveryevent" in q["sql"]]
    assert len(event_queries) == 1
    assert '"delivery_id" = ' in event_queries[0] and "LIMIT" in event_queries[0]
