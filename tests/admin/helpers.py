"""Helpers for admin tests: role accounts and the campaign form's POST data."""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User

from campaigns.models import Campaign
from tests.factories import UserFactory

ROLES = ("editor", "approver", "auditor")


def ensure_role_groups() -> None:
    """The groups come from a data migration; a transactional test's flush removes them."""
    if Group.objects.filter(name__in=ROLES).count() < len(ROLES):
        roles = importlib.import_module("campaigns.migrations.0002_role_groups")
        roles.create_role_groups(django_apps, None)
        consent = importlib.import_module("campaigns.migrations.0013_approver_consent_permissions")
        consent.grant(django_apps, None)
        feedback = importlib.import_module("campaigns.migrations.0021_admin_feedback_permissions")
        feedback.grant(django_apps, None)
        warmup = importlib.import_module("campaigns.migrations.0023_default_warmup_plan")
        warmup.grant(django_apps, None)
        layouts = importlib.import_module("campaigns.migrations.0026_shipped_layouts")
        layouts.grant(django_apps, None)


def user_with_roles(*roles: str, **fields: Any) -> User:
    ensure_role_groups()
    user = UserFactory.create(**fields)
    user.groups.set(Group.objects.filter(name__in=roles))
    return user


def campaign_form_data(campaign: Campaign | None = None, **overrides: Any) -> dict[str, Any]:
    """What the change form posts, from a campaign's values (or a valid new one)."""
    data: dict[str, Any] = {
        "name": "Spring news",
        "subject": "Hello {{ recipient.first_name }}",
        "from_email": "Team <team@example.com>",
        "reply_to": "",
        "text_body": "Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}",
        "body_format": "html",
        "body": "<p>Hi {{ recipient.first_name }}</p>",
        "preheader": "",
        "layout": "",
        "audiences": [],
        "rate_limit_per_minute": "",
        "schedule_kind": "manual",
        "scheduled_at_0": "",
        "scheduled_at_1": "",
        "schedule_time": "",
        "schedule_weekday": "",
        "schedule_day": "",
        "schedule_crontab": "",
        "schedule_timezone": "UTC",
        "sends-TOTAL_FORMS": "0",
        "sends-INITIAL_FORMS": "0",
        "sends-MIN_NUM_FORMS": "0",
        "sends-MAX_NUM_FORMS": "1000",
    }
    if campaign is not None:
        for name in ("name", "subject", "from_email", "reply_to", "text_body", "body"):
            data[name] = getattr(campaign, name)
        data.update(
            body_format=campaign.body_format,
            preheader=campaign.preheader,
            layout=campaign.layout_id or "",
        )
        if campaign.web_archive:
            data["web_archive"] = "on"
        data["audiences"] = [a.pk for a in campaign.audiences.all()]
        data["sends-INITIAL_FORMS"] = str(campaign.sends.count())
        data["sends-TOTAL_FORMS"] = data["sends-INITIAL_FORMS"]
        for index, send in enumerate(campaign.sends.order_by("-id")):
            data[f"sends-{index}-id"] = send.pk
            data[f"sends-{index}-campaign"] = campaign.pk
    data.update(overrides)
    return data
