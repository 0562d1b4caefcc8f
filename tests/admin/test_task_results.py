"""Task results read as words and stay read-only; beat's editors are a superuser's, and a
campaign's periodic task is managed from its campaign."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from campaigns.models import Campaign, Send, TaskLink
from tests.admin.helpers import user_with_roles
from tests.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    return client


def batch_result(campaign: Campaign, **fields: object) -> TaskResult:
    send = Send.objects.create(campaign=campaign, occurrence_key=str(uuid.uuid4()))
    task_id = str(uuid.uuid4())
    TaskLink.objects.create(task_id=task_id, kind="batch", campaign=campaign, send=send)
    done = timezone.now()
    values: dict[str, object] = {
        "task_name": "campaigns.tasks.deliver_batch",
        "status": "SUCCESS",
        "result": json.dumps({"sent": 10, "failed": 0}),
        "date_done": done,
        "worker": "w1@host",
        **fields,
    }
    result = TaskResult.objects.create(task_id=task_id, **values)
    TaskResult.objects.filter(pk=result.pk).update(
        date_created=done - timedelta(seconds=2), date_started=done - timedelta(seconds=1.4)
    )
    return result


def test_a_result_reads_as_a_title_with_its_duration(superuser: Client) -> None:
    result = batch_result(CampaignFactory.create(name="Spring newsletter"))
    listing = superuser.get(reverse("admin:django_celery_results_taskresult_changelist"))
    text = listing.content.decode()
    assert "Delivery batch for “Spring newsletter” — succeeded" in text
    assert "1.4 s" in text and "UTC" in text
    assert "&lt;Task:" not in text and "<Task:" not in text
    detail = superuser.get(
        reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
    ).content.decode()
    assert "Delivery batch for “Spring newsletter” — succeeded" in detail
    assert "Sent" in detail and '{"sent"' not in detail and "{&quot;sent" not in detail
    header = detail.split("<h1")[1].split("</h1>")[0]
    assert "Delivery batch for “Spring newsletter” — succeeded" in header
    assert "&lt;Task:" not in detail


def test_a_failure_shows_its_error_in_words_and_the_traceback_on_request(
    superuser: Client,
) -> None:
    result = batch_result(
        CampaignFactory.create(name="Autumn"),
        status="FAILURE",
        result=json.dumps({"exc_type": "SMTPServerDisconnected", "exc_message": ["gone"]}),
        traceback="Traceback (most recent call last):\n  ...\nSMTPServerDisconnected: gone",
    )
    detail = superuser.get(
        reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
    ).content.decode()
    assert "Delivery batch for “Autumn” — failed" in detail
    assert "SMTPServerDisconnected: gone" in detail
    assert "<details>" in detail


def test_nobody_adds_changes_or_deletes_a_result_not_even_a_superuser(
    superuser: Client,
) -> None:
    result = batch_result(CampaignFactory.create())
    listing = superuser.get(reverse("admin:django_celery_results_taskresult_changelist"))
    text = listing.content.decode()
    assert "delete_selected" not in text and 'name="_selected_action"' not in text
    assert superuser.get(reverse("admin:django_celery_results_taskresult_add")).status_code == 403
    change = reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
    page = superuser.get(change).content.decode()
    assert 'name="_save"' not in page
    delete = reverse("admin:django_celery_results_taskresult_delete", args=[result.pk])
    assert superuser.post(delete, {"post": "yes"}).status_code == 403
    superuser.post(change, {"status": "FAILURE"})
    result.refresh_from_db()
    assert result.status == "SUCCESS"


def scheduled_campaign() -> tuple[Campaign, PeriodicTask]:
    crontab = CrontabSchedule.objects.create(minute="0", hour="9")
    task = PeriodicTask.objects.create(
        name="campaign-1", task="campaigns.tasks.fire_scheduled_send", crontab=crontab
    )
    campaign = CampaignFactory.create(name="Weekly digest", status="scheduled")
    Campaign.objects.filter(pk=campaign.pk).update(periodic_task=task)
    return campaign, task


def test_a_campaigns_periodic_task_is_read_only_and_names_its_campaign(
    superuser: Client,
) -> None:
    campaign, task = scheduled_campaign()
    url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    page = superuser.get(url).content.decode()
    assert "Managed by campaign" in page and "Weekly digest" in page
    assert reverse("admin:campaigns_campaign_change", args=[campaign.pk]) in page
    assert 'name="_save"' not in page
    superuser.post(url, {"name": "renamed", "task": task.task, "enabled": ""})
    delete = reverse("admin:django_celery_beat_periodictask_delete", args=[task.pk])
    assert superuser.post(delete, {"post": "yes"}).status_code == 403
    task.refresh_from_db()
    assert task.name == "campaign-1" and task.enabled
    # Its crontab is the campaign's too: read-only, not deletable.
    crontab = reverse("admin:django_celery_beat_crontabschedule_change", args=[task.crontab_id])
    assert 'name="_save"' not in superuser.get(crontab).content.decode()
    crontab_delete = reverse(
        "admin:django_celery_beat_crontabschedule_delete", args=[task.crontab_id]
    )
    assert superuser.post(crontab_delete, {"post": "yes"}).status_code == 403


def test_bulk_actions_leave_a_campaigns_task_alone(superuser: Client) -> None:
    _, owned = scheduled_campaign()
    interval = IntervalSchedule.objects.create(every=60, period="seconds")
    system = PeriodicTask.objects.create(
        name="reaper", task="campaigns.tasks.reap_deliveries", interval=interval
    )
    superuser.post(
        reverse("admin:django_celery_beat_periodictask_changelist"),
        {"action": "disable_tasks", "_selected_action": [owned.pk, system.pk]},
    )
    owned.refresh_from_db()
    system.refresh_from_db()
    assert owned.enabled and not system.enabled
    listing = superuser.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    assert "Managed by campaign" in listing.content.decode() and "never" in listing.content.decode()


def test_a_system_task_stays_editable_for_a_superuser(superuser: Client) -> None:
    interval = IntervalSchedule.objects.create(every=60, period="seconds")
    task = PeriodicTask.objects.create(
        name="reaper", task="campaigns.tasks.reap_deliveries", interval=interval
    )
    page = superuser.get(
        reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    ).content.decode()
    assert 'name="_save"' in page and "Managed by campaign" not in page
    assert "In UTC." in page  # the start time says which clock it is on


@pytest.mark.parametrize("role", ["editor", "approver", "auditor"])
def test_staff_roles_do_not_see_the_raw_schedule_editors(role: str) -> None:
    client = Client()
    client.force_login(user_with_roles(role))
    assert (
        client.get(reverse("admin:django_celery_beat_periodictask_changelist")).status_code == 403
    )
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_celery_beat_periodictask_changelist") not in index


def test_a_result_links_to_its_send_by_name_and_keeps_the_task_id_on_its_page(
    superuser: Client,
) -> None:
    result = batch_result(CampaignFactory.create(name="Spring newsletter"))
    Send.objects.filter(task_links__task_id=result.task_id).update(occurrence_key="once")
    for _ in range(5):
        batch_result(CampaignFactory.create())
    listing = superuser.get(reverse("admin:django_celery_results_taskresult_changelist"))
    text = listing.content.decode()
    assert "“Spring newsletter” · One-off send</a>" in text
    assert "Send #" not in text and result.task_id not in text
    detail = superuser.get(
        reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
    ).content.decode()
    assert result.task_id in detail and "No error." in detail
    app_crumb = detail.split('href="/admin/django_celery_results/"')[1].split("</a")[0]
    assert "Task results" in app_crumb and "Celery Results" not in detail


def test_the_list_reads_names_without_a_query_per_row(superuser: Client) -> None:
    url = reverse("admin:django_celery_results_taskresult_changelist")
    batch_result(CampaignFactory.create())
    superuser.get(url)
    with CaptureQueriesContext(connection) as few:
        superuser.get(url)
    for _ in range(10):
        batch_result(CampaignFactory.create())
    with CaptureQueriesContext(connection) as many:
        superuser.get(url)
    assert len(many) == len(few)
