"""The audit trail and a send's audit page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult
from pytest_django import Settings

from campaigns.models import AuditEntry, Campaign, Delivery, Send, TaskLink
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory, RecipientFactory, audience_with

pytestmark = pytest.mark.django_db


def logged_in(*roles: str) -> tuple[Client, User]:
    user = user_with_roles(*roles)
    client = Client()
    client.force_login(user)
    return client, user


def running_send(campaign: Campaign, *, outcomes: list[str]) -> Send:
    send = Send.objects.create(
        campaign=campaign, occurrence_key="once", total=len(outcomes), started_at=timezone.now()
    )
    for index, status in enumerate(outcomes):
        Delivery.objects.create(
            send=send,
            recipient=RecipientFactory.create(email=f"row{index}@example.com"),
            status=status,
            last_error="550 mailbox unavailable" if status == Delivery.Status.FAILED else "",
        )
    return send


def test_creating_and_editing_in_the_admin_records_who_and_what() -> None:
    client, editor = logged_in("editor")
    client.post(reverse("admin:campaigns_campaign_add"), campaign_form_data())
    campaign = Campaign.objects.get()
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    client.post(url, campaign_form_data(campaign, subject="New subject {{ campaign.name }}"))

    entries = list(AuditEntry.objects.filter(campaign=campaign).order_by("id"))
    assert [e.action for e in entries] == ["created", "edited"]
    assert {e.actor for e in entries} == {editor}
    assert entries[1].changes == {"subject": "New subject {{ campaign.name }}"}


def test_approving_scheduling_and_unscheduling_are_recorded() -> None:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], schedule_kind="daily", schedule_time="09:30"
    )
    client, approver = logged_in("approver")
    for action in ("approve", "schedule_campaign", "unschedule_campaign"):
        client.post(reverse(f"admin:campaigns_campaign_{action}", args=[campaign.pk]))
    actions = list(
        AuditEntry.objects.filter(campaign=campaign, actor=approver)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["approved", "scheduled", "unscheduled"]


def test_pause_resume_and_cancel_from_the_send_page_are_audited() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], status=Campaign.Status.SENDING)
    send = running_send(campaign, outcomes=[Delivery.Status.QUEUED] * 3)
    client, approver = logged_in("approver")
    for action in ("pause", "resume", "cancel"):
        response = client.post(reverse(f"admin:campaigns_send_{action}", args=[send.pk]))
        assert response.status_code == 302
    send.refresh_from_db()
    assert send.status == Send.Status.CANCELLED
    entries = AuditEntry.objects.filter(send=send).order_by("id")
    assert [(e.action, e.actor, e.campaign_id) for e in entries] == [
        ("paused", approver, campaign.pk),
        ("resumed", approver, campaign.pk),
        ("cancelled", approver, campaign.pk),
    ]
    assert entries[0].changes == {"status": ["running", "paused"]}


def test_an_illegal_send_move_is_refused_with_a_message_and_not_audited() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    send = running_send(campaign, outcomes=[Delivery.Status.SENT])
    Send.objects.filter(pk=send.pk).update(status=Send.Status.COMPLETED)
    client, _ = logged_in("approver")
    response = client.post(reverse("admin:campaigns_send_pause", args=[send.pk]), follow=True)
    assert "cannot become paused" in response.content.decode()
    assert not AuditEntry.objects.filter(send=send).exists()


def test_an_editor_cannot_pause_a_send() -> None:
    send = running_send(CampaignFactory.create(), outcomes=[Delivery.Status.QUEUED])
    client, _ = logged_in("editor")
    assert client.post(reverse("admin:campaigns_send_pause", args=[send.pk])).status_code == 403
    send.refresh_from_db()
    assert send.status == Send.Status.RUNNING


def test_the_send_page_lists_deliveries_by_outcome_and_address() -> None:
    send = running_send(
        CampaignFactory.create(),
        outcomes=[Delivery.Status.SENT, Delivery.Status.FAILED, Delivery.Status.SENT],
    )
    client, _ = logged_in("auditor")
    url = reverse("admin:campaigns_send_change", args=[send.pk])

    page = client.get(url).content.decode()
    assert all(f"row{i}@example.com" in page for i in range(3))

    page = client.get(url, {"outcome": "failed"}).content.decode()
    assert "row1@example.com" in page and "550 mailbox unavailable" in page
    assert "row0@example.com" not in page and "row2@example.com" not in page

    page = client.get(url, {"email": "ROW2@example.com"}).content.decode()
    assert "row2@example.com" in page and "row0@example.com" not in page


def test_the_send_page_shows_its_task_results_and_each_result_links_back() -> None:
    campaign = CampaignFactory.create()
    send = running_send(campaign, outcomes=[Delivery.Status.SENT])
    ok, failed, other = (str(uuid.uuid4()) for _ in range(3))
    for task_id in (ok, failed):
        TaskLink.objects.create(task_id=task_id, kind="batch", campaign=campaign, send=send)
    TaskResult.objects.create(
        task_id=ok, task_name="campaigns.tasks.deliver_batch", status="SUCCESS", worker="w1@host"
    )
    TaskResult.objects.create(
        task_id=failed,
        task_name="campaigns.tasks.deliver_batch",
        status="FAILURE",
        traceback="Traceback: SMTPServerDisconnected",
    )
    TaskResult.objects.create(task_id=other, task_name="campaigns.tasks.reap_deliveries")

    client, _ = logged_in("auditor")
    page = client.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()
    assert ok[:8] in page and failed[:8] in page and other[:8] not in page
    assert "SMTPServerDisconnected" in page and "w1@host" in page
    # In words: the task's name and outcome, never Celery's state names or a JSON blob.
    assert "Delivery batch" in page and "succeeded" in page and ">SUCCESS<" not in page
    assert ">FAILURE<" not in page and "campaigns.tasks.deliver_batch" not in page

    results = reverse("admin:django_celery_results_taskresult_changelist")
    listing = client.get(results, {"send": send.pk}).content.decode()
    send_url = reverse("admin:campaigns_send_change", args=[send.pk])

    def row(task_id: str) -> str:  # the task id itself stays off the list: each row's page
        pk = TaskResult.objects.get(task_id=task_id).pk
        return reverse("admin:django_celery_results_taskresult_change", args=[pk])

    assert row(ok) in listing and row(failed) in listing and row(other) not in listing
    assert send_url in listing
    detail_pk = TaskResult.objects.get(task_id=ok).pk
    detail = client.get(
        reverse("admin:django_celery_results_taskresult_change", args=[detail_pk])
    ).content.decode()
    assert send_url in detail


def test_the_audit_trail_is_read_only_even_for_a_superuser() -> None:
    from tests.factories import UserFactory

    campaign = CampaignFactory.create()
    entry = AuditEntry.objects.create(action="edited", campaign=campaign, changes={"a": "b"})
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    url = reverse("admin:campaigns_auditentry_change", args=[entry.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"action": "deleted"})
    delete = reverse("admin:campaigns_auditentry_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.action == "edited"


def test_a_campaign_and_a_send_link_to_their_own_audit_entries() -> None:
    campaign = CampaignFactory.create()
    send = running_send(campaign, outcomes=[Delivery.Status.SENT])
    AuditEntry.objects.create(action="paused", campaign=campaign, send=send)
    AuditEntry.objects.create(action="edited", campaign=CampaignFactory.create(name="Another one"))
    client, _ = logged_in("auditor")
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    url = reverse("admin:campaigns_auditentry_changelist") + f"?campaign__id__exact={campaign.pk}"
    assert url in page.content.decode()
    sends = reverse("admin:campaigns_send_changelist") + f"?campaign__id__exact={campaign.pk}"
    assert sends in page.content.decode()  # the latest sends, and a link to all of them
    assert client.get(sends).status_code == 200
    listing = client.get(url).content.decode()
    assert "paused" in listing and "Another one" not in listing
    page = client.get(reverse("admin:campaigns_send_change", args=[send.pk]))
    assert f"?send__id__exact={send.pk}" in page.content.decode()


def test_a_send_page_offers_only_the_controls_its_status_allows(client: Client) -> None:
    client.force_login(user_with_roles("approver"))
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    url = reverse("admin:campaigns_send_change", args=[send.pk])
    expected = {
        Send.Status.RUNNING: {"pause", "cancel"},
        Send.Status.PAUSED: {"resume", "cancel"},
        Send.Status.COMPLETED: set(),
    }
    for status, offered in expected.items():
        Send.objects.filter(pk=send.pk).update(status=status)
        page = client.get(url).content.decode()
        for control in ("pause", "resume", "cancel"):
            assert (f"/send/{send.pk}/{control}/" in page) == (control in offered), (
                status,
                control,
            )
        assert 'name="_save"' not in page


def test_an_interruption_and_its_recovery_read_as_sentences_linked_to_the_send() -> None:
    campaign = CampaignFactory.create()
    send = running_send(campaign, outcomes=[Delivery.Status.SENT])
    interrupted = AuditEntry.objects.create(
        action=AuditEntry.Action.INTERRUPTED,
        campaign=campaign,
        send=send,
        changes={"service": "redis"},
    )
    AuditEntry.objects.create(
        action=AuditEntry.Action.RECOVERED,
        campaign=campaign,
        send=send,
        changes={"service": "redis", "since": "2026-11-25T16:32:05+00:00", "seconds": 12.4},
    )
    AuditEntry.objects.create(
        action=AuditEntry.Action.INTERRUPTED, send=send, changes={"service": "database"}
    )
    client, _ = logged_in("auditor")

    listing = client.get(
        reverse("admin:campaigns_auditentry_changelist"), {"send__id__exact": send.pk}
    ).content.decode()

    assert "Delivery interrupted: Redis unavailable" in listing
    assert "Delivery recovered after 12 s (Redis)" in listing
    assert "Delivery interrupted: the database unavailable" in listing
    assert reverse("admin:campaigns_send_change", args=[send.pk]) in listing
    detail = client.get(reverse("admin:campaigns_auditentry_change", args=[interrupted.pk]))
    assert "Delivery interrupted: Redis unavailable" in detail.content.decode()


# --- In words: titles name people, details read as a table, every entry links ----------------


def test_titles_name_the_person_the_schedule_or_the_system() -> None:
    from campaigns.selectors.audit import audit_title

    dana = user_with_roles("approver", first_name="Dana", last_name="")
    plain = user_with_roles("approver", username="jo")
    campaign = CampaignFactory.create()
    scheduled = Send.objects.create(campaign=campaign, occurrence_key="k", trigger="schedule")
    entries = [
        ("Sent by Dana", AuditEntry(action="sent", actor=dana, campaign=campaign)),
        ("Approved by jo", AuditEntry(action="approved", actor=plain, campaign=campaign)),
        ("Sent by schedule", AuditEntry(action="sent", changes={"trigger": "schedule"})),
        ("Sent by schedule", AuditEntry(action="sent", send=scheduled)),
        ("Resumed by the system", AuditEntry(action="resumed", send=scheduled)),
        (
            "Recipient status changed by the person themselves",
            AuditEntry(action="recipient_status_changed", send=scheduled, changes={"to": "x"}),
        ),
        ("Send refused by the system", AuditEntry(action="send_refused", campaign=campaign)),
        ("Approval cleared by Dana", AuditEntry(action="approval_cleared", actor=dana)),
    ]
    for title, entry in entries:
        assert audit_title(entry) == title


def test_every_action_reads_as_words() -> None:
    for action in AuditEntry.Action:
        label = str(action.label)
        assert "_" not in label and label[0].isupper(), label


def test_the_trail_links_each_entry_to_what_it_was_about() -> None:
    from campaigns.models import ImportJob

    approver = user_with_roles("approver", first_name="Dana")
    campaign = CampaignFactory.create(name="Spring newsletter")
    send = running_send(campaign, outcomes=[Delivery.Status.SENT])
    job = ImportJob.objects.create(file="imports/x.csv", original_name="people.csv")
    recipient = RecipientFactory.create(email="ada@example.com")
    AuditEntry.objects.create(
        action="paused",
        actor=approver,
        send=send,
        campaign=campaign,
        changes={"status": ["running", "paused"]},
    )
    AuditEntry.objects.create(
        action="import_started", import_job=job, changes={"file": "people.csv"}
    )
    AuditEntry.objects.create(
        action="recipient_status_changed",
        actor=approver,
        recipient=recipient,
        changes={"recipient": recipient.pk, "from": "active", "to": "bounced", "reason": ""},
    )
    client, _ = logged_in("auditor")
    listing = client.get(reverse("admin:campaigns_auditentry_changelist")).content.decode()
    for url in (
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        reverse("admin:campaigns_send_change", args=[send.pk]),
        reverse("admin:campaigns_importjob_change", args=[job.pk]),
        reverse("admin:campaigns_recipient_change", args=[recipient.pk]),
    ):
        assert url in listing
    assert "Paused by Dana" in listing and "Status: running → paused" in listing
    assert "Status: active → bounced" in listing
    assert "None" not in listing.split("<tbody")[1]
    assert '{"status"' not in listing and "{&quot;" not in listing


def test_an_edit_entry_shows_its_fields_by_their_labels_in_a_table() -> None:
    campaign = CampaignFactory.create()
    entry = AuditEntry.objects.create(
        action="edited", campaign=campaign, changes={"body": "<p>Hi</p>", "subject": "Hello"}
    )
    client, _ = logged_in("auditor")
    page = client.get(reverse("admin:campaigns_auditentry_change", args=[entry.pk])).content
    text = page.decode()
    details = text.split('class="audit-details')[1].split("</table>")[0]
    assert "Subject" in details and "Hello" in details
    assert "&lt;p&gt;Hi&lt;/p&gt;" in details  # shown, never rendered
    assert "UTC" in text  # the time carries its zone
    assert "Edited by the system" in text.split("<h1")[1].split("</h1>")[0]  # not "edited by None"


def test_no_control_adds_changes_or_deletes_an_entry_for_a_superuser() -> None:
    from tests.factories import UserFactory

    entry = AuditEntry.objects.create(action="edited", campaign=CampaignFactory.create())
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    listing = client.get(reverse("admin:campaigns_auditentry_changelist")).content.decode()
    assert "delete_selected" not in listing and 'name="_selected_action"' not in listing
    assert reverse("admin:campaigns_auditentry_add") not in listing
    detail = client.get(reverse("admin:campaigns_auditentry_change", args=[entry.pk]))
    text = detail.content.decode()
    assert 'name="_save"' not in text and 'name="_continue"' not in text
    assert reverse("admin:campaigns_auditentry_delete", args=[entry.pk]) not in text
    assert client.get(reverse("admin:campaigns_auditentry_add")).status_code == 403


def test_a_test_message_entry_links_to_its_task_result() -> None:
    campaign = CampaignFactory.create()
    task_id = str(uuid.uuid4())
    entry = AuditEntry.objects.create(
        action="test_sent", campaign=campaign, changes={"to": "me@example.com", "task_id": task_id}
    )
    client, _ = logged_in("auditor")
    page = client.get(reverse("admin:campaigns_auditentry_change", args=[entry.pk])).content
    results = reverse("admin:django_celery_results_taskresult_changelist")
    assert f'href="{results}?q={task_id}"' in page.decode()


def test_times_on_the_send_page_carry_their_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    send = running_send(CampaignFactory.create(), outcomes=[Delivery.Status.SENT])
    Send.objects.filter(pk=send.pk).update(created_at=datetime(2026, 7, 1, 10, 30, tzinfo=UTC))
    client, _ = logged_in("auditor")
    page = client.get(reverse("admin:campaigns_send_change", args=[send.pk])).content.decode()
    # A read-only time is formatted by Django with the site's format, which names the zone.
    assert "July 1, 2026, 12:30 p.m. CEST" in page
