"""A send a guardrail paused: its page says why with the figures, the dashboard lists it, and
only an approver resumes it, through a page asking why."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from campaigns.models import AuditEntry, Guardrail, Send
from campaigns.services.delivery import send_launch, send_pause
from campaigns.services.guardrails import send_guard
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "campaigns.services.delivery.control.publish_guardrail_notice", lambda send_id: None
    )


def tripped() -> Send:
    campaign = CampaignFactory.create(name="Winter sale", audiences=[audience_with(3)])
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    Send.objects.filter(pk=send.pk).update(sent_count=400, bounced_count=26)
    assert send_guard(send_id=send.pk) == Guardrail.HARD_BOUNCES
    return Send.objects.get(pk=send.pk)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def sender_only() -> User:
    user = UserFactory.create()
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["send_campaign", "view_send"])
    )
    return user


def test_the_send_page_shows_the_guardrail_with_its_figures_and_threshold() -> None:
    send = tripped()
    page = logged_in(user_with_roles("approver")).get(
        reverse("admin:campaigns_send_change", args=[send.pk])
    )
    html = page.content.decode()

    assert 'id="send-guardrail"' in html
    assert "Paused by a guardrail: hard-bounce rate" in html
    assert "26 of 400 messages (6.50 %)" in html
    assert "above 5 %" in html
    resume = reverse("admin:campaigns_send_resume_guardrail", args=[send.pk])
    assert resume in html
    # The plain resume is not offered: it would skip the reason.
    assert reverse("admin:campaigns_send_resume", args=[send.pk]) not in html


def test_someone_who_may_send_but_not_approve_sees_no_resume() -> None:
    send = tripped()
    client = logged_in(sender_only())
    html = client.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()

    assert 'id="send-guardrail-resume-unavailable"' in html
    assert reverse("admin:campaigns_send_resume_guardrail", args=[send.pk]) not in html
    # Nor can they resume by posting the plain resume.
    client.post(reverse("admin:campaigns_send_resume", args=[send.pk]))
    assert Send.objects.get(pk=send.pk).status == Send.Status.PAUSED
    url = reverse("admin:campaigns_send_resume_guardrail", args=[send.pk])
    assert client.post(url, {"reason": "go"}).status_code == 403


def test_an_approver_resumes_with_a_reason_and_it_is_audited() -> None:
    send = tripped()
    boss = user_with_roles("approver")
    client = logged_in(boss)
    url = reverse("admin:campaigns_send_resume_guardrail", args=[send.pk])

    form = client.get(url)
    assert form.status_code == 200 and b"guardrail-resume-submit" in form.content
    empty = client.post(url, {"reason": ""})
    assert empty.status_code == 200
    assert Send.objects.get(pk=send.pk).status == Send.Status.PAUSED

    done = client.post(url, {"reason": "Stale segment removed"})

    assert done.status_code == 302
    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING and send.guardrail == ""
    entry = AuditEntry.objects.get(send=send, action=AuditEntry.Action.RESUMED)
    assert entry.actor == boss and entry.changes["reason"] == "Stale segment removed"
    page = client.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()
    assert 'id="send-guardrail-accepted"' in page and "Stale segment removed" in page


def test_the_dashboard_lists_guardrail_pauses_for_everyone() -> None:
    send = tripped()
    other = tripped()
    send_pause(send_id=other.pk, by=None)  # already paused: stays on the list
    html = logged_in(user_with_roles("auditor")).get(reverse("admin:index")).content.decode()

    assert 'id="dashboard-guardrails"' in html
    assert f'data-guardrail-send="{send.pk}"' in html
    assert "6.50 % (26 of 400 messages), above the 5 % guardrail" in html


def test_the_dashboard_has_no_block_without_guardrail_pauses() -> None:
    html = logged_in(user_with_roles("auditor")).get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-guardrails"' not in html
