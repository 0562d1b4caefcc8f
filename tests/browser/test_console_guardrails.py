"""A send a guardrail paused, in a real browser: the dashboard lists it, its page says why with
the figures and the threshold, and an approver resumes it through a page asking why."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from campaigns.models import (
    AuditEntry,
    Delivery,
    Guardrail,
    Recipient,
    Send,
    Subscription,
)
from campaigns.services.delivery import send_launch
from campaigns.services.guardrails import send_guard
from tests.browser.support import login
from tests.factories import AudienceFactory, CampaignFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS, SENT, NO_MAILBOX = 600, 380, 22


@pytest.fixture(autouse=True)
def _no_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    # No worker runs here: the approvers' email is the fault test's and the services' part.
    monkeypatch.setattr(
        "campaigns.services.delivery.control.publish_guardrail_notice", lambda send_id: None
    )


def bouncing_send() -> Send:
    """A send 402 messages in: 380 accepted, 22 refused as no such mailbox (5.5 %)."""
    tag = uuid.uuid4().hex[:6]
    audience = AudienceFactory.create()
    recipients = Recipient.objects.bulk_create(
        Recipient(email=f"reader{i}-{tag}@example.com", first_name=f"Reader{i}")
        for i in range(RECIPIENTS)
    )
    Subscription.objects.bulk_create(
        Subscription(recipient=r, audience=audience) for r in recipients
    )
    campaign = CampaignFactory.create(name="Winter sale", audiences=[audience])
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    ids = list(Delivery.objects.filter(send=send).order_by("id").values_list("id", flat=True))
    now = timezone.now()
    Delivery.objects.filter(pk__in=ids[:SENT]).update(
        status=Delivery.Status.SENT, attempts=1, sent_at=now, smtp_response="250 2.0.0 OK"
    )
    gone = ids[SENT : SENT + NO_MAILBOX]
    Delivery.objects.filter(pk__in=gone).update(
        status=Delivery.Status.FAILED, attempts=1, smtp_response="550 5.1.1 No such user"
    )
    Recipient.objects.filter(deliveries__pk__in=gone).update(status=Recipient.Status.BOUNCED)
    Send.objects.filter(pk=send.pk).update(sent_count=SENT, failed_count=NO_MAILBOX)
    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES
    return send


def test_a_guardrail_pause_on_the_dashboard_and_the_send_page_and_its_resume(
    live_server: Any, page: Any, shots: Callable[[Any, str], None]
) -> None:
    approver = UserFactory.create(username="rosa", first_name="Rosa")
    approver.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["approve_campaign", "send_campaign", "view_send", "view_campaign"]
        )
    )
    send = bouncing_send()
    base = live_server.url
    login(page, base, "rosa")

    # 1. The dashboard lists it for everyone, with what was measured.
    page.goto(f"{base}/admin/")
    block = page.locator("#dashboard-guardrails")
    block.wait_for()
    assert "Winter sale" in block.inner_text()
    assert "5.47 % (22 of 402 messages), above the 5 % guardrail" in block.inner_text()
    shots(page, "guardrail-dashboard")

    # 2. The send's page says why, prominently, with the figures and the threshold.
    block.locator("a", has_text="Winter sale").first.click()
    banner = page.locator("#send-guardrail")
    banner.wait_for()
    assert "Paused by a guardrail: hard-bounce rate" in banner.inner_text()
    assert "22 of 402 messages (5.47 %)" in page.locator("#send-guardrail-measured").inner_text()
    assert "above 5 %" in page.locator("#send-guardrail-threshold").inner_text()
    shots(page, "guardrail-send")

    # 3. Resuming asks why; the reason is audited and the send runs again.
    page.locator("#send-guardrail-resume").click()
    page.wait_for_selector("#guardrail-resume")
    page.fill("textarea[name=reason]", "The old trade-fair segment is suppressed now")
    shots(page, "guardrail-resume")
    page.locator("#guardrail-resume-submit").click()
    page.wait_for_selector("#send-guardrail-accepted")

    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING and send.guardrail == ""
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.RESUMED)
    assert entry.actor_id == approver.pk
    assert entry.changes["reason"] == "The old trade-fair segment is suppressed now"
