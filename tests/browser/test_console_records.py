"""The console's records in a real browser: a recipient's page, the recipients' search, the
audit trail in words, and the task results and schedules nobody edits by hand.

Only a live server: nothing here needs a worker, beat or the SMTP sink, so the data (a send's
deliveries, a task result) is written directly as the delivery engine would have left it.
Screenshots: "recipient-page", "audit-trail-words", "task-result-detail".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from campaigns.models import (
    Audience,
    AuditEntry,
    Campaign,
    Delivery,
    Recipient,
    Send,
    Subscription,
    TaskLink,
)
from campaigns.services.audiences import recipient_status_change
from tests.browser.support import login
from tests.factories import CampaignFactory, RecipientFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def a_person_with_a_history(dana: Any) -> tuple[Recipient, list[Send]]:
    """Two lists (one left), three messages over three days, then an opt-out by phone."""
    recipient = RecipientFactory.create(
        email="ada.lovelace@example.org",
        first_name="Ada",
        last_name="Lovelace",
        attributes={"city": "London", "plan": "gold", "interests": ["maths", "engines"]},
    )
    for name, status in (("Newsletter readers", "subscribed"), ("Offers", "unsubscribed")):
        Subscription.objects.create(
            recipient=recipient, audience=Audience.objects.create(name=name), status=status
        )
    campaign = CampaignFactory.create(name="Spring newsletter", status=Campaign.Status.SENT)
    now = timezone.now()
    sends = []
    for day in (3, 2, 1):
        send = Send.objects.create(
            campaign=campaign, occurrence_key=f"day-{day}", status=Send.Status.COMPLETED
        )
        Delivery.objects.create(
            send=send,
            recipient=recipient,
            status=Delivery.Status.SENT,
            sent_at=now - timedelta(days=day),
            updated_at=now - timedelta(days=day),
        )
        sends.append(send)
    RecipientFactory.create(email="grace@example.com")
    recipient_status_change(
        recipient=recipient, status="unsubscribed", by=dana, reason="Asked by phone"
    )
    return recipient, sends


def a_campaigns_trail(dana: Any, sends: list[Send]) -> None:
    """What the services record for a campaign sent by hand, then by its schedule, paused."""
    first, scheduled = sends[0], sends[1]
    Send.objects.filter(pk=scheduled.pk).update(trigger=Send.Trigger.SCHEDULE)
    campaign = first.campaign
    AuditEntry.objects.create(action="approved", actor=dana, campaign=campaign)
    AuditEntry.objects.create(
        action="sent", actor=dana, campaign=campaign, send=first, changes={"occurrence": "once"}
    )
    AuditEntry.objects.create(
        action="sent",
        campaign=campaign,
        send=scheduled,
        changes={"occurrence": "day-2", "trigger": "schedule"},
    )
    AuditEntry.objects.create(
        action="paused",
        actor=dana,
        campaign=campaign,
        send=scheduled,
        changes={"status": ["running", "paused"]},
    )


def a_finished_batch(send: Send) -> TaskResult:
    task_id = str(uuid.uuid4())
    TaskLink.objects.create(task_id=task_id, kind="batch", campaign=send.campaign, send=send)
    done = timezone.now()
    result = TaskResult.objects.create(
        task_id=task_id,
        task_name="campaigns.tasks.deliver_batch",
        status="SUCCESS",
        result=json.dumps({"sent": 1, "failed": 0, "skipped": 0}),
        worker="worker1@opsdash",
        date_done=done,
    )
    TaskResult.objects.filter(pk=result.pk).update(
        date_created=done - timedelta(seconds=2), date_started=done - timedelta(seconds=1.4)
    )
    return result


def test_records_read_as_words_and_stay_read_only(
    live_server: Any, new_page: Callable[..., Any], shots: Callable[[Any, str], None]
) -> None:
    # Tall enough that the sticky save bar sits below the panels in the full-page screenshots.
    page = new_page(viewport={"width": 1400, "height": 1500})
    dana = UserFactory.create(
        username="dana", first_name="Dana", last_name="Scully", is_superuser=True
    )
    recipient, sends = a_person_with_a_history(dana)
    result = a_finished_batch(sends[-1])
    a_campaigns_trail(dana, sends)
    base = live_server.url
    login(page, base, "dana")

    # 1. The recipient's page: lists, consent with its reason and history, deliveries latest
    #    first and linked, attributes as a table, the address as stored in the title.
    page.goto(f"{base}/admin/campaigns/recipient/{recipient.pk}/change/")
    assert "ada.lovelace@example.org" in page.locator("#header-inner h1").inner_text()
    lists = page.locator("#recipient-subscriptions").inner_text()
    assert "Newsletter readers" in lists and "Offers" in lists and "Unsubscribed" in lists
    assert "Unsubscribed on" in lists and "Subscribed since" not in lists  # she left all
    consent = page.locator("#recipient-consent").inner_text()
    assert "No mail goes to this address: unsubscribed." in consent
    assert "Asked by phone" in consent and "Recipient status changed by Dana Scully" in consent
    rows = page.locator("#recipient-deliveries tbody tr")
    assert rows.count() == 3
    shown = [rows.nth(i).get_attribute("data-delivery") for i in range(3)]
    newest_first = Delivery.objects.filter(recipient=recipient).order_by("-id")
    assert shown == [str(pk) for pk in newest_first.values_list("pk", flat=True)]
    attributes = page.locator("#recipient-attributes").inner_text()
    assert "London" in attributes and "maths, engines" in attributes
    shots(page, "recipient-page")
    rows.first.locator("a").click()
    page.wait_for_url(f"**/admin/campaigns/send/{sends[-1].pk}/change/")

    # 2. Search by the exact address (typed in capitals) and by the domain.
    for term in ("Ada.Lovelace@Example.ORG", "@example.org"):
        page.goto(f"{base}/admin/campaigns/recipient/")
        page.fill("input[name=q]", term)
        page.press("input[name=q]", "Enter")
        page.wait_for_url("**/recipient/?q=*")
        listing = page.locator("#result_list").inner_text()
        assert "ada.lovelace@example.org" in listing and "grace@example.com" not in listing
    # Part of a name finds nothing, and the page says why instead of a bare "0 results".
    page.fill("input[name=q]", "ada")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/recipient/?q=ada")
    assert "is neither an address nor a domain" in page.locator("body").inner_text()

    # 3. The audit trail names people and links each entry to what it was about.
    page.goto(f"{base}/admin/campaigns/auditentry/")
    trail = page.locator("#result_list").inner_text()
    assert "Recipient status changed by Dana Scully" in trail
    assert "active → unsubscribed" in trail and "None" not in trail
    assert "Sent by Dana Scully" in trail and "Sent by schedule" in trail
    assert "Paused by Dana Scully" in trail and "Status: running → paused" in trail
    assert page.locator(f"#result_list a[href$='/send/{sends[1].pk}/change/']").count() == 2
    link = page.locator(f"#result_list a[href$='/recipient/{recipient.pk}/change/']")
    assert link.count() == 1
    assert page.locator("#result_list input[type=checkbox]").count() == 0
    shots(page, "audit-trail-words")
    page.locator("#result_list a", has_text="Recipient status changed by Dana Scully").click()
    page.wait_for_url("**/auditentry/*/change/")
    assert page.locator("input[name=_save], button[name=_save]").count() == 0
    assert "Asked by phone" in page.locator(".audit-details").inner_text()

    # 4. A task result reads as a title, with its duration, and offers no controls.
    page.goto(f"{base}/admin/django_celery_results/taskresult/")
    listing = page.locator("#result_list").inner_text()
    assert "Delivery batch for “Spring newsletter” — succeeded" in listing
    assert "<Task:" not in listing and page.locator("#result_list input").count() == 0
    assert "“Spring newsletter” · day-1" in listing and result.task_id not in listing
    page.goto(f"{base}/admin/django_celery_results/taskresult/{result.pk}/change/")
    body = page.locator("#content").inner_text()
    assert "1.4 s" in body and "UTC" in body and "No error." in body
    assert "<Task:" not in page.locator("#header-inner h1").inner_text()
    assert page.locator("input[name=_save], button[name=_save]").count() == 0
    assert page.locator("a[href$='/delete/']").count() == 0
    shots(page, "task-result-detail")

    # 5. A campaign's periodic task says where its schedule is changed, and is read-only.
    crontab = CrontabSchedule.objects.create(minute="0", hour="9")
    task = PeriodicTask.objects.create(
        name="campaign-digest", task="campaigns.tasks.fire_scheduled_send", crontab=crontab
    )
    digest = CampaignFactory.create(name="Weekly digest", status=Campaign.Status.SCHEDULED)
    Campaign.objects.filter(pk=digest.pk).update(periodic_task=task)
    page.goto(f"{base}/admin/django_celery_beat/periodictask/{task.pk}/change/")
    notice = page.locator("a", has_text="Weekly digest").first
    assert "Managed by campaign" in page.locator("#content").inner_text()
    assert page.locator("input[name=_save], button[name=_save]").count() == 0
    notice.click()
    page.wait_for_url(f"**/admin/campaigns/campaign/{digest.pk}/change/")
