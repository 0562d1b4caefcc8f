"""Each role can do its part and nothing more; an account without staff status gets nothing.

The walk at the end takes every route under admin/ (each ModelAdmin's views, custom views,
import/export, actions, the mailbox) for every role; a route without a row fails the test.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_celery_results.models import GroupResult, TaskResult
from pytest_django import Settings

from campaigns.models import (
    AuditEntry,
    BounceMessage,
    Campaign,
    Delivery,
    ImportJob,
    Layout,
    SeedList,
    Send,
    Suppression,
    Warmup,
    WarmupPlan,
)
from campaigns.services.campaigns import campaign_save
from tests.admin.helpers import campaign_form_data, ensure_role_groups, user_with_roles
from tests.factories import CampaignFactory, SubscriptionFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db

CHANGELISTS = (
    "admin:campaigns_campaign_changelist",
    "admin:campaigns_send_changelist",
    "admin:campaigns_delivery_changelist",
    "admin:campaigns_recipient_changelist",
    "admin:campaigns_audience_changelist",
    "admin:campaigns_subscription_changelist",
    "admin:campaigns_importjob_changelist",
    "admin:campaigns_auditentry_changelist",
    "admin:campaigns_suppression_changelist",
    "admin:campaigns_bouncemessage_changelist",
    "admin:campaigns_warmup_changelist",
    "admin:campaigns_warmupplan_changelist",
    "admin:campaigns_layout_changelist",
    "admin:django_celery_results_taskresult_changelist",
)


def client_for(*roles: str, **fields: object) -> tuple[Client, User]:
    user = user_with_roles(*roles, **fields)
    client = Client()
    client.force_login(user)
    return client, user


def action_url(name: str, campaign: Campaign) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])


def test_the_migration_makes_the_three_role_groups() -> None:
    ensure_role_groups()  # after a transactional test flushed them, as the migration would
    groups = {g.name: {p.codename for p in g.permissions.all()} for g in Group.objects.all()}
    assert {"editor", "approver", "auditor"} <= set(groups)
    assert {"add_campaign", "change_campaign", "send_test_campaign", "add_importjob"} <= groups[
        "editor"
    ]
    assert not {"approve_campaign", "send_campaign"} & groups["editor"]
    assert {"approve_campaign", "send_campaign"} <= groups["approver"]
    assert not {"add_campaign", "change_campaign"} & groups["approver"]
    assert all(codename.startswith("view_") for codename in groups["auditor"])


@pytest.mark.parametrize("role", ["editor", "approver", "auditor"])
def test_every_role_reads_every_changelist(role: str) -> None:
    client, _ = client_for(role)
    for name in CHANGELISTS:
        assert client.get(reverse(name)).status_code == 200, name
    assert client.get(reverse("admin:index")).status_code == 200


def test_an_editor_composes_but_cannot_approve_schedule_or_send() -> None:
    client, editor = client_for("editor")
    response = client.post(reverse("admin:campaigns_campaign_add"), campaign_form_data())
    assert response.status_code == 302, response.content[:2000]
    campaign = Campaign.objects.get(name="Spring news")
    assert campaign.owner == editor

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    assert action_url("send_test_to_me", campaign).encode() in page
    for action in ("approve", "send_now", "schedule_campaign"):
        assert action_url(action, campaign).encode() not in page
        assert client.post(action_url(action, campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.approved_by is None and campaign.status == Campaign.Status.DRAFT
    assert not Send.objects.exists()


def test_an_approver_approves_and_sends_but_cannot_edit_content() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)])
    client, approver = client_for("approver")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    response = client.post(url, campaign_form_data(campaign, subject="Changed"))
    assert response.status_code == 403
    assert client.get(reverse("admin:campaigns_campaign_add")).status_code == 403

    client.post(action_url("approve", campaign))
    campaign.refresh_from_db()
    assert campaign.approved_by == approver
    assert campaign.subject != "Changed"

    response = client.post(action_url("send_now", campaign))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert AuditEntry.objects.filter(action="sent", actor=approver, campaign=campaign).exists()
    # The approver cannot send tests: that belongs to editors.
    assert client.post(action_url("send_test_to_me", campaign)).status_code == 403


def test_an_auditor_reads_everything_and_changes_nothing() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    client, _ = client_for("auditor")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, campaign_form_data(campaign, name="Renamed")).status_code == 403
    assert client.get(reverse("admin:campaigns_campaign_add")).status_code == 403
    delete = reverse("admin:campaigns_campaign_delete", args=[campaign.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    for action in ("approve", "send_now", "schedule_campaign", "send_test_to_me"):
        assert client.post(action_url(action, campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.name != "Renamed" and campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.filter(campaign=campaign).exists()


def test_an_account_without_staff_status_gets_nothing() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    # Even with every role's group, an account that is not staff is sent to the login page.
    client, _ = client_for("editor", "approver", "auditor", is_staff=False)
    urls = [reverse(name) for name in CHANGELISTS] + [
        reverse("admin:index"),
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        action_url("send_now", campaign),
        action_url("approve", campaign),
        reverse("admin:campaigns_campaign_preview"),
        reverse("admin-system-status"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert reverse("admin:login") in response["Location"]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_by is None


def test_four_eyes_stops_the_last_editor_from_sending(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = True
    client, both = client_for("editor", "approver")
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    campaign_save(campaign=campaign, by=both, changed=["subject"])

    response = client.post(action_url("send_now", campaign), follow=True)
    assert "Four-eyes rule" in response.content.decode()
    response = client.post(action_url("schedule_campaign", campaign), follow=True)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.filter(action="sent").exists()

    other, _ = client_for("approver")
    other.post(action_url("approve", campaign))  # an approval by someone else, after the edit
    other.post(action_url("send_now", campaign))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_without_four_eyes_the_last_editor_may_send(settings: Settings) -> None:
    settings.OPSDASH_FOUR_EYES = False
    client, both = client_for("editor", "approver")
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    campaign_save(campaign=campaign, by=both, changed=["subject"])
    client.post(action_url("send_now", campaign))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_a_superuser_still_sees_every_action() -> None:
    user = UserFactory.create(is_superuser=True)
    client = Client()
    client.force_login(user)
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], schedule_kind="daily", schedule_time="09:00"
    )
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    for action in ("approve", "send_now", "schedule_campaign", "send_test_to_me", "duplicate"):
        assert action_url(action, campaign).encode() in page


def test_state_changing_actions_refuse_a_plain_link() -> None:
    """A GET (a link on another site, a prefetch) must never send or approve anything."""
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    client, _ = client_for("editor", "approver")
    for action in ("approve", "send_test_to_me", "duplicate"):
        assert client.get(action_url(action, campaign)).status_code == 405
    # Send now and Schedule answer a GET with their confirmation page, which changes nothing.
    for action in ("send_now", "schedule_campaign", "cancel_campaign"):
        assert client.get(action_url(action, campaign)).status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_by is None
    assert not AuditEntry.objects.filter(campaign=campaign).exists()


@pytest.mark.parametrize(
    ("role", "allowed"), [("editor", True), ("approver", False), ("auditor", False)]
)
def test_only_editors_may_start_an_import(role: str, allowed: bool) -> None:
    client, _ = client_for(role)
    status = client.get(reverse("admin:campaigns_importjob_add")).status_code
    assert status == (200 if allowed else 403)


# --- Every admin URL, for every role ----------------------------------------------------

WALK_ROLES = ("editor", "approver", "auditor", "nonstaff")


def admin_routes() -> Iterator[str]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("admin/"):
                yield route

    return walk(get_resolver().url_patterns, "")


class World:
    """One object of every kind an admin URL can name."""

    def __init__(self, media: Path, maildir: Path) -> None:
        self.uploader = UserFactory.create()
        subscription = SubscriptionFactory.create()
        self.recipient = subscription.recipient
        campaign = CampaignFactory.create(audiences=[subscription.audience])
        send = Send.objects.create(campaign=campaign, occurrence_key="once")
        job = ImportJob(created_by=self.uploader, mapping={"headers": ["email"]})
        job.file.save("people.csv", ContentFile(b"email\nada@example.com\n"), save=False)
        job.error_report.save("rejects.csv", ContentFile(b"line,email\n2,x\n"), save=False)
        job.save()
        interval = IntervalSchedule.objects.create(every=10, period="seconds")
        message = EmailMessage()
        message["Subject"] = "Hi"
        self.mail_key = mailbox.Maildir(maildir, create=True).add(message)
        self.task_id = "0b9ad0a8-aaaa-bbbb-cccc-000000000001"
        self.ids: dict[str, Any] = {
            "auth/group": Group.objects.get(name="editor").pk,
            "auth/user": self.uploader.pk,
            "campaigns/campaign": campaign.pk,
            "campaigns/seedlist": SeedList.objects.create(name="QA", addresses="qa@example.com").pk,
            "campaigns/send": send.pk,
            "campaigns/delivery": Delivery.objects.create(send=send, recipient=self.recipient).pk,
            "campaigns/recipient": self.recipient.pk,
            "campaigns/audience": subscription.audience.pk,
            "campaigns/subscription": subscription.pk,
            "campaigns/importjob": job.pk,
            "campaigns/suppression": Suppression.objects.create(
                email="gone@example.com", reason=Suppression.Reason.HARD_BOUNCE
            ).pk,
            "campaigns/bouncemessage": BounceMessage.objects.create(
                raw=b"Subject: hi\r\n\r\nbody", status=BounceMessage.Status.NEEDS_REVIEW
            ).pk,
            "campaigns/auditentry": AuditEntry.objects.create(
                action="created", campaign=campaign
            ).pk,
            "django_celery_beat/periodictask": PeriodicTask.objects.create(
                name="t", task="campaigns.tasks.reap_deliveries", interval=interval
            ).pk,
            "django_celery_beat/intervalschedule": interval.pk,
            "django_celery_beat/crontabschedule": CrontabSchedule.objects.create().pk,
            "django_celery_beat/solarschedule": SolarSchedule.objects.create(
                event="sunrise", latitude=1, longitude=1
            ).pk,
            "django_celery_beat/clockedschedule": ClockedSchedule.objects.create(
                clocked_time="2030-01-01T00:00Z"
            ).pk,
            "campaigns/layout": Layout.objects.get_or_create(
                name="Roles frame", defaults={"html": "{{ content }}{{ unsubscribe_url }}"}
            )[0].pk,
            "campaigns/warmupplan": (
                plan := WarmupPlan.objects.create(name="Slow", daily_limits=[5])
            ).pk,
            "campaigns/warmup": Warmup.objects.create(
                target="news.example.com", plan=plan, started_on="2026-11-01"
            ).pk,
            "django_celery_results/taskresult": TaskResult.objects.create(task_id=self.task_id).pk,
            "django_celery_results/groupresult": GroupResult.objects.create(group_id="g").pk,
            "axes/accessattempt": AccessAttempt.objects.create(
                username="someone", ip_address="192.0.2.1", failures_since_start=3
            ).pk,
            "axes/accessfailurelog": AccessFailureLog.objects.create(
                username="someone", ip_address="192.0.2.1"
            ).pk,
        }

    def url(self, route: str) -> str:
        model = "/".join(route.split("/")[1:3])
        values = {
            "object_id": self.ids.get(model, ""),
            "pk": self.ids.get(model, ""),
            "id": self.uploader.pk,
            "key": self.mail_key,
            "task_id": self.task_id,
            "content_type_id": ContentType.objects.get_for_model(ImportJob).pk,
            "app_label": "campaigns",
            "url": "no-such-page/",
        }
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)
        url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m.group(1)]), url)
        url = url.replace("^", "").replace("$", "")
        return "/" + url


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> World:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.OPSDASH_MAILBOX_DIR = str(tmp_path / "mail")
    return World(tmp_path / "media", tmp_path / "mail")


def walk_clients() -> dict[str, Client]:
    """One client per role; "nonstaff" holds every role's group but not staff status."""
    result = {}
    for role in WALK_ROLES:
        client = Client()
        if role == "nonstaff":
            user = user_with_roles("editor", "approver", "auditor", is_staff=False)
        else:
            user = user_with_roles(role)
        client.force_login(user)
        result[role] = client
    return result


# Expected status codes per role: (editor, approver, auditor, nonstaff). A non-staff account is
# sent to the login page (302) everywhere. 200 reads, 302 redirects (or runs an action), 403 is
# refused, 404 hides what is not this user's, 405 is POST-only (see POST_EXPECTED).
Codes = tuple[int, int, int, int]
READ: Codes = (200, 200, 200, 302)
EDITOR: Codes = (200, 403, 403, 302)
APPROVER: Codes = (403, 200, 403, 302)
NOBODY: Codes = (403, 403, 403, 302)
REDIRECT: Codes = (302, 302, 302, 302)
NOT_FOUND: Codes = (404, 404, 404, 302)
AUDITOR: Codes = (403, 403, 200, 302)


def model_routes(
    path: str, *, read: Codes = READ, add: Codes = NOBODY, delete: Codes = NOBODY
) -> dict[str, Codes]:
    """The six routes every ModelAdmin has."""
    base = f"admin/{path}/"
    return {
        base: read,
        f"{base}add/": add,
        f"{base}<path:object_id>/history/": read,
        f"{base}<path:object_id>/delete/": delete,
        f"{base}<path:object_id>/change/": read,
        f"{base}<path:object_id>/": REDIRECT,  # the old-style URL, redirected to change/
    }


EXPECTED: dict[str, Codes] = {
    # The demo mailbox holds everyone's mail: superusers only.
    "admin/mailbox/": NOBODY,
    "admin/mailbox/<str:key>/": NOBODY,
    "admin/system-status/": READ,
    "admin/search/": READ,
    "admin/": READ,
    "admin/login/": (302, 302, 302, 200),  # logged in already: on to the index
    "admin/logout/": (405, 405, 405, 302),  # POST only
    "admin/password_change/": READ,
    "admin/password_change/done/": READ,
    "admin/autocomplete/": NOBODY,  # without a field to complete
    "admin/jsi18n/": READ,
    "admin/r/<path:content_type_id>/<path:object_id>/": NOT_FOUND,  # no public page
    "admin/^(?P<app_label>auth|campaigns|django_celery_beat|django_celery_results|axes)/$": (
        NOT_FOUND
    ),
    # Login lockouts: superusers only, whatever a group grants.
    **model_routes("axes/accessattempt", read=NOBODY),
    **model_routes("axes/accessfailurelog", read=NOBODY),
    "admin/(?P<url>.*)$": NOT_FOUND,
    # Users and groups: the auditor reads them (who holds which role); nobody else.
    **model_routes("auth/group", read=AUDITOR),
    **model_routes("auth/user", read=AUDITOR),
    "admin/auth/user/<id>/password/": NOBODY,
    # Campaigns: editors write and test, approvers approve and send (POST only, below).
    **model_routes("campaigns/campaign", add=EDITOR, delete=EDITOR),
    "admin/campaigns/campaign/preview/": (405, 405, 405, 302),  # POST only; editors, below
    "admin/campaigns/campaign/convert-body/": (405, 405, 405, 302),  # POST only; editors
    "admin/campaigns/campaign/task-state/<str:task_id>/": NOT_FOUND,  # not a test task
    # Send now, Schedule and Cancel: a GET is the confirmation page, the POST acts.
    "admin/campaigns/campaign/<path:object_id>/send_now/": APPROVER,
    "admin/campaigns/campaign/<path:object_id>/schedule_campaign/": APPROVER,
    "admin/campaigns/campaign/<path:object_id>/cancel_campaign/": APPROVER,
    "admin/campaigns/campaign/<path:object_id>/unschedule_campaign/": (403, 405, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/approve/": (403, 405, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/send_test_to_me/": (405, 403, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/duplicate/": (405, 403, 403, 302),
    "admin/campaigns/campaign/<int:object_id>/send-test/": (405, 405, 405, 302),
    "admin/campaigns/campaign/<int:object_id>/sends/<path:key>/": READ,  # on to the send
    # The Pre-flight panel: Re-check for every reader, the override for approvers (POST only).
    "admin/campaigns/campaign/<int:object_id>/preflight/recheck/": (405, 405, 405, 302),
    "admin/campaigns/campaign/<int:object_id>/preflight/override/": (405, 405, 405, 302),
    # Seed lists: kept by those who may send tests (editors).
    **model_routes("campaigns/seedlist", read=EDITOR, add=EDITOR, delete=EDITOR),
    **model_routes("campaigns/send"),
    "admin/campaigns/send/<path:object_id>/pause/": (403, 405, 403, 302),
    "admin/campaigns/send/<path:object_id>/resume/": (403, 405, 403, 302),
    # A guardrail's pause is resumed by approvers, through a page asking why; a send no
    # guardrail paused (this one) sends them back to its page.
    "admin/campaigns/send/<path:object_id>/resume_guardrail/": (403, 302, 403, 302),
    "admin/campaigns/send/<path:object_id>/cancel/": APPROVER,  # GET: the confirmation
    "admin/campaigns/send/<path:object_id>/live/": READ,  # the send page's refresh (JSON)
    **model_routes("campaigns/delivery"),
    # Recipients: editors add and edit (never the status); approvers change the status.
    **model_routes("campaigns/recipient", add=EDITOR),
    "admin/campaigns/recipient/<path:object_id>/status/": APPROVER,
    "admin/campaigns/recipient/export/": READ,
    "admin/campaigns/recipient/export_delivery_log_csv/": READ,
    "admin/campaigns/recipient/export_delivery_log_xlsx/": READ,
    "admin/campaigns/recipient/import_recipients/": (302, 403, 403, 302),  # to the upload
    # The suppression list: read and exported by every role; approvers (who may override
    # consent) lift a suppression, through a form asking why (GET shows it).
    **model_routes("campaigns/suppression"),
    "admin/campaigns/suppression/export/": READ,
    "admin/campaigns/suppression/<path:object_id>/lift/": APPROVER,
    # Bounce mail nobody's parser understood: read by every role, dismissed by approvers.
    **model_routes("campaigns/bouncemessage"),
    "admin/campaigns/bouncemessage/<path:object_id>/dismiss/": (403, 405, 403, 302),
    # Warm-up: read by every role; approvers put domains and channels on plans and edit them.
    **model_routes("campaigns/warmupplan", add=APPROVER, delete=APPROVER),
    **model_routes("campaigns/warmup", add=APPROVER, delete=APPROVER),
    # Layouts: read by every role; approvers (who decide what is sent) edit them, since an
    # edit reaches every later send of every campaign using one.
    **model_routes("campaigns/layout", add=APPROVER, delete=APPROVER),
    **model_routes("campaigns/audience", add=EDITOR),
    **model_routes("campaigns/subscription", add=EDITOR),
    # Imports: editors upload; a job's mapping and report are its uploader's (here someone
    # else's, so 404 for the editor); its progress (counts only) is for every reader.
    **model_routes("campaigns/importjob", add=EDITOR),
    "admin/campaigns/importjob/<int:pk>/mapping/": (404, 403, 403, 302),
    "admin/campaigns/importjob/<int:pk>/progress/": READ,
    "admin/campaigns/importjob/<int:pk>/cancel/": (405, 405, 405, 302),
    "admin/campaigns/importjob/<int:pk>/report/": NOT_FOUND,
    **model_routes("campaigns/auditentry"),
    # Beat's raw editors: superusers only. A campaign's schedule is changed from the campaign.
    **model_routes("django_celery_beat/periodictask", read=NOBODY),
    **model_routes("django_celery_beat/intervalschedule", read=NOBODY),
    **model_routes("django_celery_beat/crontabschedule", read=NOBODY),
    **model_routes("django_celery_beat/solarschedule", read=NOBODY),
    **model_routes("django_celery_beat/clockedschedule", read=NOBODY),
    # Task results: read by every role, added, changed or deleted by nobody (retention purges).
    **model_routes("django_celery_results/taskresult"),
    **model_routes("django_celery_results/groupresult"),
}

# POST to every POST-only route (and the status form): who lacks the permission gets 403.
POST_EXPECTED: dict[str, Codes] = {
    "admin/campaigns/importjob/<int:pk>/cancel/": (404, 403, 403, 302),
    # Rendering a preview: open to every reader on this branch (see the preview's own rules).
    "admin/campaigns/campaign/preview/": EDITOR,  # rendering needs the right to write it
    # The body's format switch, for those who compose (an empty body names no format: 400).
    "admin/campaigns/campaign/convert-body/": (400, 403, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/send_now/": (403, 302, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/schedule_campaign/": (403, 302, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/unschedule_campaign/": (403, 302, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/approve/": (403, 302, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/send_test_to_me/": (302, 403, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/cancel_campaign/": (403, 302, 403, 302),
    "admin/campaigns/campaign/<path:object_id>/duplicate/": (302, 403, 403, 302),
    "admin/campaigns/campaign/<int:object_id>/send-test/": (302, 403, 403, 302),
    "admin/campaigns/campaign/<int:object_id>/preflight/recheck/": REDIRECT,
    "admin/campaigns/campaign/<int:object_id>/preflight/override/": (403, 302, 403, 302),
    "admin/campaigns/send/<path:object_id>/pause/": (403, 302, 403, 302),
    "admin/campaigns/send/<path:object_id>/resume/": (403, 302, 403, 302),
    "admin/campaigns/send/<path:object_id>/cancel/": (403, 302, 403, 302),
    "admin/campaigns/recipient/<path:object_id>/status/": (403, 200, 403, 302),
    "admin/campaigns/bouncemessage/<path:object_id>/dismiss/": (403, 302, 403, 302),
}
POST_NOT_WALKED = ("admin/logout/",)  # would log the client out; Django's own view


def mismatches(wrong: dict[str, tuple[tuple[int, ...], Codes]]) -> str:
    return "(got, expected) per route:\n" + "\n".join(f"{r}: {c}" for r, c in wrong.items())


def test_every_admin_url_gives_each_role_exactly_its_part(world: World) -> None:
    clients = walk_clients()
    routes = list(admin_routes())
    unknown = sorted(set(routes) - set(EXPECTED))
    assert not unknown, f"admin URLs without an expected row (add them to EXPECTED): {unknown}"
    assert not set(EXPECTED) - set(routes), "EXPECTED names routes that no longer exist"
    wrong = {}
    for route in routes:
        url = world.url(route)
        codes = tuple(clients[role].get(url).status_code for role in WALK_ROLES)
        if codes != EXPECTED[route]:
            wrong[route] = (codes, EXPECTED[route])
    assert not wrong, "(got, expected) per route:\n" + "\n".join(
        f"{r}: {c}" for r, c in wrong.items()
    )


def test_every_post_only_admin_url_refuses_roles_without_its_permission(world: World) -> None:
    post_only = {route for route, codes in EXPECTED.items() if 405 in codes[:3]}
    post_only -= set(POST_NOT_WALKED)
    assert post_only <= set(POST_EXPECTED), (
        f"POST-only routes without a row: {post_only - set(POST_EXPECTED)}"
    )
    clients = walk_clients()
    wrong = {}
    for route, expected in POST_EXPECTED.items():
        url = world.url(route)
        codes = tuple(clients[role].post(url).status_code for role in WALK_ROLES)
        if codes != expected:
            wrong[route] = (codes, expected)
    assert not wrong, "(got, expected) per route:\n" + "\n".join(
        f"{r}: {c}" for r, c in wrong.items()
    )
