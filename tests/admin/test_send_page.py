"""The send's page counts its rows, says what happened to each, and refreshes while it runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, Send
from campaigns.selectors.occurrence import occurrence_words
from campaigns.selectors.sends import POLL_MAX_MS, POLL_MS, poll_interval_ms, send_progress
from campaigns.services.delivery import send_launch
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db

Reason = Delivery.SkipReason


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    return client


def a_send(recipients: int = 6) -> Send:
    campaign = CampaignFactory.create(audiences=[audience_with(recipients)])
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    return send


def mark(send: Send, count: int, status: str, reason: str = "") -> None:
    """The ``count`` lowest still-queued rows get ``status`` (and a skip reason)."""
    ids = list(
        Delivery.objects.filter(send=send, status=Delivery.Status.QUEUED)
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )
    now = timezone.now()
    sent_at = now if status == Delivery.Status.SENT else None
    Delivery.objects.filter(pk__in=ids).update(status=status, skip_reason=reason, sent_at=sent_at)


def live(client: Client, send: Send, query: str = "") -> Any:
    response = client.get(reverse("admin:campaigns_send_live", args=[send.pk]) + query)
    assert response.status_code == 200
    return response.json()


def page(client: Client, send: Send) -> str:
    response = client.get(reverse("admin:campaigns_send_change", args=[send.pk]))
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_counts_come_from_the_rows_not_the_counters(staff_client: Client) -> None:
    send = a_send()
    mark(send, 2, Delivery.Status.SENT)
    mark(send, 1, Delivery.Status.FAILED)
    Send.objects.filter(pk=send.pk).update(sent_count=0)  # the counters lag or drift

    data = live(staff_client, send)

    progress = data["progress"]
    assert (progress["sent"], progress["failed"], progress["waiting"]) == (2, 1, 3)
    assert progress["summary"] == "3 of 6 handled: 2 sent, 1 failed, 3 not sent yet"
    assert data["poll"] is True and data["next_ms"] == POLL_MS
    assert 'data-count="sent">2<' in data["progress_html"]
    assert data["deliveries_html"].count('data-status="sent"') == 2


def test_a_cancelled_send_says_how_many_were_sent_and_skipped_and_why(
    staff_client: Client,
) -> None:
    send = a_send(6)
    mark(send, 2, Delivery.Status.SENT)
    mark(send, 3, Delivery.Status.SKIPPED, Reason.CANCELLED)
    mark(send, 1, Delivery.Status.SKIPPED, Reason.UNSUBSCRIBED)
    Send.objects.filter(pk=send.pk).update(
        status=Send.Status.CANCELLED, finished_at=timezone.now() - timedelta(minutes=5)
    )

    html = page(staff_client, send)

    assert (
        "6 of 6 handled: 2 sent, 4 skipped (3 cancelled before sending, "
        "1 unsubscribed during the send)"
    ) in html
    assert 'Skipped: <span class="font-semibold">3</span> cancelled before sending' in html
    assert "(100%)" not in html and "6 / 6" not in html
    assert html.count("Skipped: cancelled before sending") == 3  # the rows say why
    assert 'data-poll="false"' in html  # ended a while ago: nothing left to refresh


def test_one_skip_reason_reads_as_one_sentence() -> None:
    send = a_send(4)
    mark(send, 1, Delivery.Status.SENT)
    mark(send, 3, Delivery.Status.SKIPPED, Reason.CANCELLED)

    progress = send_progress(send_id=send.pk)

    assert progress.summary == "4 of 4 handled: 1 sent, 3 skipped (cancelled before sending)"
    assert progress.done == progress.total == 4 and progress.waiting == 0


def test_a_send_that_just_ended_is_refreshed_a_little_longer(staff_client: Client) -> None:
    send = a_send(2)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.CANCELLED, finished_at=timezone.now())

    assert live(staff_client, send)["poll"] is True
    assert 'data-poll="true"' in page(staff_client, send)


def test_the_live_view_keeps_the_pages_filters(staff_client: Client) -> None:
    send = a_send(4)
    mark(send, 1, Delivery.Status.SENT)
    mark(send, 3, Delivery.Status.SKIPPED, Reason.CANCELLED)

    rows = live(staff_client, send, "?outcome=sent")["deliveries_html"]

    assert rows.count("<tr") == 1 and 'data-status="sent"' in rows


def test_the_live_view_costs_the_same_few_queries_for_any_number_of_rows(
    staff_client: Client, django_assert_max_num_queries: Any
) -> None:
    send = a_send(30)
    mark(send, 10, Delivery.Status.SENT)
    mark(send, 10, Delivery.Status.SKIPPED, Reason.CANCELLED)

    with django_assert_max_num_queries(12):
        live(staff_client, send)


def test_the_live_view_is_for_staff_who_may_read_sends() -> None:
    send = a_send(1)
    url = reverse("admin:campaigns_send_live", args=[send.pk])
    nobody = Client()
    nobody.force_login(UserFactory.create(is_staff=True))  # staff, no role
    auditor = Client()
    auditor.force_login(user_with_roles("auditor", is_staff=True))

    assert Client().get(url).status_code == 302  # to the login page
    assert nobody.get(url).status_code == 403
    assert auditor.get(url).status_code == 200
    missing = reverse("admin:campaigns_send_live", args=[send.pk + 1000])
    assert auditor.get(missing).status_code == 404


def test_a_large_send_is_asked_less_often() -> None:
    assert poll_interval_ms(0.01) == POLL_MS
    assert poll_interval_ms(0.2) == 4000
    assert poll_interval_ms(5.0) == POLL_MAX_MS


def test_the_launch_keeps_the_id_span_the_newest_rows_are_read_from(staff_client: Client) -> None:
    send = a_send(3)
    later = a_send(2)  # a send launched after it: its rows are newer
    rows = Delivery.objects.filter(send=send).order_by("id").values_list("id", flat=True)

    send.refresh_from_db()

    assert (send.delivery_id_low, send.delivery_id_high) == (rows[0], rows[2])
    shown = live(staff_client, send)["deliveries_html"]
    assert shown.count("<tr") == 3
    assert live(staff_client, later)["deliveries_html"].count("<tr") == 2


def cancel_url(send: Send) -> str:
    return reverse("admin:campaigns_send_cancel", args=[send.pk])


def test_cancel_on_the_send_page_first_shows_what_it_will_do_and_changes_nothing() -> None:
    client = Client()
    client.force_login(user_with_roles("approver"))
    send = a_send(6)
    mark(send, 2, Delivery.Status.SENT)
    mark(send, 1, Delivery.Status.SENDING)

    response = client.get(cancel_url(send))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="confirm-recipients" data-count="4">4 recipients</strong>' in html
    assert 'id="confirm-already-sent" data-count="2">2 have been sent already' in html
    assert "subscribed</li>" in html and 'id="confirm-channel">SMTP relay' in html
    assert 'id="confirm-submit"' in html and "Back to the send" in html
    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING
    assert not Delivery.objects.filter(send=send, status=Delivery.Status.SKIPPED).exists()


def test_the_confirmation_form_cancels_the_send_and_skips_the_rows_not_sent() -> None:
    client = Client()
    client.force_login(user_with_roles("approver"))
    send = a_send(5)
    mark(send, 2, Delivery.Status.SENT)

    response = client.post(cancel_url(send), follow=True)

    send.refresh_from_db()
    assert send.status == Send.Status.CANCELLED
    assert "Cancelled: the recipients not yet sent are marked skipped." in response.content.decode()
    progress = send_progress(send_id=send.pk)
    assert (progress.sent, progress.skipped, progress.total) == (2, 3, 5)
    assert progress.skip_reasons == [(Reason.CANCELLED.label, 3)]


def test_a_finished_send_cannot_be_cancelled_and_its_page_says_why() -> None:
    client = Client()
    client.force_login(user_with_roles("approver"))
    send = a_send(3)
    mark(send, 3, Delivery.Status.SENT)
    Send.objects.filter(pk=send.pk).update(
        status=Send.Status.COMPLETED, sent_count=3, finished_at=timezone.now()
    )

    html = client.get(cancel_url(send)).content.decode()

    assert "Nothing is being sent, so there is nothing to cancel." in html
    assert "This cannot be done now: this send has finished on " in html
    assert "nothing is left to send (3 of 3 handled: 3 sent)" in html
    assert 'id="confirm-submit"' not in html


def test_only_those_who_may_send_see_the_cancel_confirmation() -> None:
    send = a_send(1)
    editor = Client()
    editor.force_login(user_with_roles("editor"))

    assert editor.get(cancel_url(send)).status_code == 403
    assert editor.post(cancel_url(send)).status_code == 403
    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING


def test_the_campaigns_latest_sends_say_what_happened_in_words(staff_client: Client) -> None:
    send = a_send(6)
    mark(send, 2, Delivery.Status.SENT)
    mark(send, 4, Delivery.Status.SKIPPED, Reason.CANCELLED)
    Send.objects.filter(pk=send.pk).update(
        status=Send.Status.CANCELLED, sent_count=2, skipped_count=4, finished_at=timezone.now()
    )
    url = reverse("admin:campaigns_campaign_change", args=[send.campaign_id])

    html = staff_client.get(url).content.decode()

    assert "6 of 6 handled: 2 sent, 4 skipped" in html
    assert "6 / 6" not in html


def test_deliveries_name_their_send_and_leave_the_task_id_to_the_detail_page(
    staff_client: Client,
) -> None:
    send = a_send(3)
    Delivery.objects.filter(send=send).update(task_id="0938a0a2-1111-2222-3333-444455556666")
    url = reverse("admin:campaigns_delivery_changelist")
    staff_client.get(url)
    with CaptureQueriesContext(connection) as queries:
        text = staff_client.get(url).content.decode()
    assert f"“{send.campaign.name}” · One-off send</a>" in text
    assert "Send #" not in text and "0938a0a2" not in text
    a_send(5)
    with CaptureQueriesContext(connection) as more:
        staff_client.get(url)
    assert len(more) == len(queries)  # the names come with the rows
    row = Delivery.objects.filter(send=send).first()
    assert row is not None
    detail = staff_client.get(reverse("admin:campaigns_delivery_change", args=[row.pk]))
    assert "0938a0a2" in detail.content.decode()


def test_the_send_page_says_its_occurrence_in_words_and_a_stall_only_when_there_is_one(
    staff_client: Client,
) -> None:
    send = a_send(1)
    url = reverse("admin:campaigns_send_change", args=[send.pk])
    page = staff_client.get(url).content.decode()
    assert "Occurrence" in page and "One-off send" in page
    assert "Occurrence key" not in page and "Stalled reason" not in page
    Send.objects.filter(pk=send.pk).update(stalled_reason="No progress for 10 minutes")
    page = staff_client.get(url).content.decode()
    assert "Stalled reason" in page and "No progress for 10 minutes" in page


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("once", "One-off send"),
        ("cron:2026-11-25T09:00:00+00:00", "Scheduled for 25 Nov 2026, 09:00 UTC"),
        ("manual:2026-11-25T10:03", "Sent by hand, 25 Nov 2026, 10:03 UTC"),
        ("day-2026-11-25", "day-2026-11-25"),
        ("cron:not-a-time", "cron:not-a-time"),
    ],
)
def test_an_occurrence_key_reads_as_words(key: str, words: str) -> None:
    assert occurrence_words(key) == words


def test_the_send_page_says_who_started_it_or_that_the_schedule_did(staff_client: Client) -> None:
    send = a_send(recipients=1)
    Send.objects.filter(pk=send.pk).update(trigger=Send.Trigger.SCHEDULE)
    page = staff_client.get(reverse("admin:campaigns_send_change", args=[send.pk]))
    assert "Started by" in page.content.decode() and "the schedule" in page.content.decode()

    dana = UserFactory.create(username="dana", first_name="Dana", last_name="Scully")
    Send.objects.filter(pk=send.pk).update(trigger=Send.Trigger.MANUAL, triggered_by=dana)
    page = staff_client.get(reverse("admin:campaigns_send_change", args=[send.pk]))
    assert "Dana Scully" in page.content.decode()
