"""The campaign form: preview, plain-words schedule, validation messages, test messages."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_celery_beat.models import PeriodicTask

from campaigns.models import AuditEntry, Campaign
from opsdash.smtp_sink import SmtpSink
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory, RecipientFactory, audience_with
from tests.processes import CeleryProcess

pytestmark = pytest.mark.django_db


def logged_in(*roles: str, **fields: object) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles, **fields))
    return client


PREVIEW = "admin:campaigns_campaign_preview"


def test_the_preview_renders_unsaved_content_for_a_chosen_recipient() -> None:
    RecipientFactory.create(
        email="ada@example.com", first_name="Ada", attributes={"city": "Bergen"}
    )
    response = logged_in("editor").post(
        reverse(PREVIEW),
        {
            "recipient": "Ada@Example.com",
            "name": "Draft",
            "subject": "Hi {{ recipient.first_name }}",
            "from_email": "a@example.com",
            "text_body": "From {{ recipient.attributes.city }}",
            "body": (
                "<p>Hello <b>{{ recipient.first_name }}</b> "
                "from {{ recipient.attributes.city }}</p>"
            ),
        },
    )
    data = response.json()
    assert data["subject"] == "Hi Ada"
    # Raw HTML without an unsubscribe link of its own gets the default footer.
    assert data["html"].startswith("<p>Hello <b>Ada</b> from Bergen</p><p ")
    assert 'href="#unsubscribe-preview"' in data["html"]
    assert data["text"] == "From Bergen"
    assert data["recipient"] == "ada@example.com"


def test_the_preview_escapes_recipient_data_in_html() -> None:
    RecipientFactory.create(email="eve@example.com", first_name="<script>x</script>")
    data = (
        logged_in("editor")
        .post(
            reverse(PREVIEW),
            {
                "recipient": "eve@example.com",
                "subject": "s",
                "text_body": "",
                "body": "<p>{{ recipient.first_name }}</p>",
            },
        )
        .json()
    )
    assert data["html"].startswith("<p>&lt;script&gt;x&lt;/script&gt;</p>")


def test_the_preview_falls_back_to_the_saved_campaign_and_a_sample_recipient() -> None:
    campaign = CampaignFactory.create(subject="Hello {{ recipient.first_name }}")
    data = logged_in("editor").post(reverse(PREVIEW), {"campaign_id": campaign.pk}).json()
    assert data["subject"] == "Hello Sample"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"body": "{{ recipient.salary }}"}, "no field 'salary'"),
        ({"recipient": "nobody@example.com"}, "No recipient has this address."),
    ],
)
def test_the_preview_explains_what_is_wrong(fields: dict[str, str], message: str) -> None:
    posted = {"subject": "s", "text_body": "t", **fields}
    data = logged_in("editor").post(reverse(PREVIEW), posted).json()
    assert message in data["error"]


def test_the_preview_ignores_a_malformed_campaign_id() -> None:
    posted = {"campaign_id": "1 OR 1=1", "subject": "s", "text_body": "t"}
    assert logged_in("editor").post(reverse(PREVIEW), posted).json()["subject"] == "s"


def test_the_preview_needs_a_post_and_staff() -> None:
    assert logged_in("editor").get(reverse(PREVIEW)).status_code == 405
    assert Client().post(reverse(PREVIEW), {"subject": "x"}).status_code == 302


def test_the_schedule_fields_show_only_for_their_kind() -> None:
    page = logged_in("editor").get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert "schedule_kind == &#x27;weekly&#x27;" in page or "schedule_kind == 'weekly'" in page
    assert 'x-model.fill="schedule_kind"' in page


def test_a_weekly_schedule_in_plain_words_becomes_one_periodic_task() -> None:
    editor = logged_in("editor")
    audience = audience_with(1)
    data = campaign_form_data(
        audiences=[audience.pk],
        schedule_kind="weekly",
        schedule_time="09:30",
        schedule_weekday="2",
        schedule_timezone="Europe/Oslo",
    )
    assert editor.post(reverse("admin:campaigns_campaign_add"), data).status_code == 302
    campaign = Campaign.objects.get()

    approver = logged_in("approver")
    response = approver.post(
        reverse("admin:campaigns_campaign_schedule_campaign", args=[campaign.pk]), follow=True
    )
    assert "is scheduled: Every Wednesday at 09:30 (Europe/Oslo)" in response.content.decode()
    task = PeriodicTask.objects.get()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "9", "3")
    assert str(task.crontab.timezone) == "Europe/Oslo"

    # Editing the time later returns the campaign to draft without its PeriodicTask; scheduled
    # again, it has exactly one with the new time.
    campaign.refresh_from_db()
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    data = campaign_form_data(
        campaign,
        schedule_kind="weekly",
        schedule_time="18:00",
        schedule_weekday="2",
        schedule_timezone="Europe/Oslo",
    )
    response = editor.post(url, data, follow=True)
    assert "is back to draft" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and not PeriodicTask.objects.exists()
    approver.post(reverse("admin:campaigns_campaign_schedule_campaign", args=[campaign.pk]))
    task = PeriodicTask.objects.get()
    assert (task.crontab.minute, task.crontab.hour) == ("0", "18")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule_kind": "weekly", "schedule_time": "09:00"}, "Choose the day of the week."),
        ({"schedule_kind": "daily"}, "Choose the time of day for a recurring send."),
        ({"schedule_kind": "crontab", "schedule_crontab": "61 * * * *"}, "not valid"),
        ({"schedule_kind": "once"}, "Choose the date and time to send."),
        ({"schedule_kind": "monthly", "schedule_time": "09:00", "schedule_day": "31"}, "1 to 28"),
        ({"text_body": "{{ recipient.password }}"}, "the recipient has no field 'password'"),
    ],
)
def test_the_form_says_what_to_fix(fields: dict[str, str], message: str) -> None:
    response = logged_in("editor").post(
        reverse("admin:campaigns_campaign_add"), campaign_form_data(None, **fields)
    )
    assert response.status_code == 200
    assert escape(message) in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_once_schedule_in_the_past_is_refused() -> None:
    past = timezone.now() - timedelta(hours=1)
    response = logged_in("editor").post(
        reverse("admin:campaigns_campaign_add"),
        campaign_form_data(
            schedule_kind="once",
            scheduled_at_0=past.strftime("%Y-%m-%d"),
            scheduled_at_1=past.strftime("%H:%M:%S"),
        ),
    )
    assert "This time is in the past" in response.content.decode()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_test_message_returns_at_once_and_its_state_can_be_followed(
    smtp_sink: SmtpSink, worker: CeleryProcess
) -> None:
    campaign = CampaignFactory.create(subject="Hello {{ recipient.first_name }}")
    client = logged_in("editor", email="editor@example.com")
    response = client.post(reverse("admin:campaigns_campaign_send_test_to_me", args=[campaign.pk]))
    assert response.status_code == 302
    task_id = parse_qs(urlparse(response["Location"]).query)["test_task"][0]
    state_url = reverse("admin:campaigns_campaign_task_state", args=[task_id])

    deadline = time.monotonic() + 60
    state = client.get(state_url).json()
    while not state["done"] and time.monotonic() < deadline:
        time.sleep(0.5)
        state = client.get(state_url).json()
    assert state["state"] == "SUCCESS", state
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[TEST] Hello Sample"
    assert message["To"].addresses[0].addr_spec == "editor@example.com"


def test_the_task_state_endpoint_knows_only_our_tasks() -> None:
    url = reverse("admin:campaigns_campaign_task_state", args=["not-a-task-of-ours"])
    assert logged_in("editor").get(url).status_code == 404


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [
        ("draft", {"send_now", "schedule_campaign", "approve"}, {"unschedule_campaign"}),
        ("scheduled", {"send_now", "unschedule_campaign", "approve"}, {"schedule_campaign"}),
        ("sending", set(), {"send_now", "schedule_campaign", "unschedule_campaign", "approve"}),
    ],
)
def test_the_page_offers_the_status_controls_the_campaign_allows(
    status: str, shown: set[str], hidden: set[str]
) -> None:
    campaign = CampaignFactory.create(
        status=status, audiences=[audience_with(1)], schedule_kind="daily", schedule_time="09:00"
    )
    client = logged_in("editor", "approver")
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    for name in shown | {"send_test_to_me", "duplicate"}:
        assert reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk]).encode() in page
    for name in hidden:
        assert reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk]).encode() not in page


def test_a_test_message_is_recorded_in_the_audit_trail() -> None:
    campaign = CampaignFactory.create()
    client = logged_in("editor", email="editor@example.com")
    url = reverse("admin:campaigns_campaign_send_test_to_me", args=[campaign.pk])
    response = client.post(url, follow=True)
    assert "is on its way to editor@example.com" in response.content.decode()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.TEST_SENT)
    assert entry.campaign == campaign and entry.changes["to"] == "editor@example.com"


def test_a_test_message_needs_an_address_on_the_account() -> None:
    campaign = CampaignFactory.create()
    client = logged_in("editor", email="")
    url = reverse("admin:campaigns_campaign_send_test_to_me", args=[campaign.pk])
    response = client.post(url, follow=True)
    assert "Your account has no email address" in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_ticking_other_audiences_in_the_form_voids_the_approval_and_the_schedule() -> None:
    """The audiences are saved with the edit (not by a later save_m2m), so they count as one."""
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], schedule_kind="daily", schedule_time="09:00"
    )
    approver = logged_in("approver")
    approver.post(reverse("admin:campaigns_campaign_approve", args=[campaign.pk]))
    approver.post(reverse("admin:campaigns_campaign_schedule_campaign", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED and campaign.approved_at is not None

    other = audience_with(1)
    data = campaign_form_data(campaign, audiences=[other.pk], schedule_kind="daily")
    data["schedule_time"] = "09:00"
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert logged_in("editor").post(url, data).status_code == 302

    campaign.refresh_from_db()
    assert list(campaign.audiences.all()) == [other]
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_at is None
    assert campaign.edited_at is not None and not PeriodicTask.objects.exists()
    edited = AuditEntry.objects.filter(action="edited").order_by("-id").first()
    assert edited is not None and edited.changes == {"audiences": [other.name]}
    assert AuditEntry.objects.filter(action="approval_cleared", campaign=campaign).exists()


def test_a_paused_campaign_shows_its_content_read_only_and_keeps_it() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], status="paused")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    editor = logged_in("editor")
    page = editor.get(url).content.decode()
    assert 'name="subject"' not in page and 'name="rate_limit_per_minute"' in page

    editor.post(url, campaign_form_data(campaign, subject="Changed while paused"))
    campaign.refresh_from_db()
    assert campaign.subject != "Changed while paused"


def test_the_send_page_shows_the_content_it_froze_escaped_and_sandboxed() -> None:
    from campaigns.services.delivery import send_launch

    campaign = CampaignFactory.create(
        audiences=[audience_with(1)],
        subject="Frozen subject",
        body='<p>Frozen</p><script>alert("x")</script>',
    )
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    Campaign.objects.filter(pk=campaign.pk).update(subject="Live subject")

    page = logged_in("auditor").get(reverse("admin:campaigns_send_change", args=[send.pk]))
    html = page.content.decode()
    assert "Frozen subject" in html and "Live subject" not in html
    assert '<iframe sandbox=""' in html
    assert escape('<script>alert("x")</script>') in html
    assert '<script>alert("x")</script>' not in html
