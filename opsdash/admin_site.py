"""Unfold callbacks named by dotted path in settings.UNFOLD: environment badge and sidebar."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse_lazy

from campaigns.models import BounceMessage


def environment_callback(request: HttpRequest) -> list[str]:
    if settings.PRODUCTION:
        return ["Production", "danger"]
    if settings.PROFILE == "embedded":
        return ["Demo (embedded)", "info"]
    return ["Services", "warning"]


def _has_mailbox(request: HttpRequest) -> bool:
    return bool(settings.OPSDASH_MAILBOX_DIR) and request.user.is_superuser


def _is_superuser(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser)


def _perm(codename: str) -> Any:
    return lambda request: request.user.has_perm(codename)


def bounce_review_badge(request: HttpRequest) -> str:
    """How many bounce messages wait for a person (the indexed status column); empty at 0."""
    waiting = BounceMessage.objects.filter(status=BounceMessage.Status.NEEDS_REVIEW).count()
    return str(waiting) if waiting else ""


def navigation(request: HttpRequest) -> list[dict[str, Any]]:
    def item(title: str, icon: str, url: str, perm: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"title": title, "icon": icon, "link": reverse_lazy(url)}
        if perm:
            entry["permission"] = _perm(perm)
        return entry

    return [
        {
            "title": "Operations",
            "items": [
                item("Dashboard", "dashboard", "admin:index"),
                item(
                    "Campaigns",
                    "campaign",
                    "admin:campaigns_campaign_changelist",
                    "campaigns.view_campaign",
                ),
                # The frames campaign bodies are set in (header, footer, styles).
                item(
                    "Layouts",
                    "web",
                    "admin:campaigns_layout_changelist",
                    "campaigns.view_layout",
                ),
                # The addresses test sends go to: kept by those who may send tests.
                item(
                    "Seed lists",
                    "forward_to_inbox",
                    "admin:campaigns_seedlist_changelist",
                    "campaigns.send_test_campaign",
                ),
                item("Sends", "send", "admin:campaigns_send_changelist", "campaigns.view_send"),
                item(
                    "Deliveries",
                    "mark_email_read",
                    "admin:campaigns_delivery_changelist",
                    "campaigns.view_delivery",
                ),
                # New sending domains and channels send a little more each day.
                item(
                    "Warm-up",
                    "local_fire_department",
                    "admin:campaigns_warmup_changelist",
                    "campaigns.view_warmup",
                ),
                item(
                    "Warm-up plans",
                    "stairs",
                    "admin:campaigns_warmupplan_changelist",
                    "campaigns.view_warmupplan",
                ),
                {
                    "title": "Mailbox (demo)",
                    "icon": "inbox",
                    "link": reverse_lazy("mailbox"),
                    "permission": _has_mailbox,
                },
            ],
        },
        {
            "title": "Audience",
            "items": [
                item(
                    "Recipients",
                    "person",
                    "admin:campaigns_recipient_changelist",
                    "campaigns.view_recipient",
                ),
                # Addresses never mailed again (bounces, complaints): read-only for every role.
                item(
                    "Suppressions",
                    "block",
                    "admin:campaigns_suppression_changelist",
                    "campaigns.view_suppression",
                ),
                {
                    **item(
                        "Bounce messages",
                        "report",
                        "admin:campaigns_bouncemessage_changelist",
                        "campaigns.view_bouncemessage",
                    ),
                    "badge": "opsdash.admin_site.bounce_review_badge",
                },
                item(
                    "Audiences",
                    "groups",
                    "admin:campaigns_audience_changelist",
                    "campaigns.view_audience",
                ),
                item(
                    "Subscriptions",
                    "how_to_reg",
                    "admin:campaigns_subscription_changelist",
                    "campaigns.view_subscription",
                ),
                item(
                    "Imports",
                    "upload_file",
                    "admin:campaigns_importjob_changelist",
                    "campaigns.view_importjob",
                ),
            ],
        },
        {
            "title": "Audit",
            "items": [
                item(
                    "Audit trail",
                    "history",
                    "admin:campaigns_auditentry_changelist",
                    "campaigns.view_auditentry",
                ),
                item(
                    "Task results",
                    "task_alt",
                    "admin:django_celery_results_taskresult_changelist",
                    "django_celery_results.view_taskresult",
                ),
                {  # the raw beat editor: superusers only (staff schedule from the campaign)
                    "title": "Periodic tasks",
                    "icon": "schedule",
                    "link": reverse_lazy("admin:django_celery_beat_periodictask_changelist"),
                    "permission": _is_superuser,
                },
            ],
        },
        {
            "title": "Access",
            "items": [
                item("Users", "manage_accounts", "admin:auth_user_changelist", "auth.view_user"),
                item("Groups", "group", "admin:auth_group_changelist", "auth.view_group"),
                {
                    "title": "Login lockouts",
                    "icon": "lock_person",
                    "link": reverse_lazy("admin:axes_accessattempt_changelist"),
                    "permission": _is_superuser,
                },
            ],
        },
    ]
