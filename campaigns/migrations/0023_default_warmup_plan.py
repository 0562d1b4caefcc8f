"""A default warm-up plan staff can edit or copy: 30 days from 50 to 50,000 messages per
mailbox provider per day, doubling for the first week, then rising steadily."""

from __future__ import annotations

from typing import Any

from django.db import migrations

NAME = "Standard 30 days"
DAILY_LIMITS = [
    50, 100, 200, 400, 800, 1500, 2500, 4000, 6000, 8000,
    10000, 12500, 15000, 17500, 20000, 22500, 25000, 27500, 30000, 32500,
    35000, 37500, 40000, 42000, 44000, 46000, 47500, 48500, 49500, 50000,
]  # fmt: skip
DESCRIPTION = (
    "Per mailbox provider per day: doubles from 50 for the first week, then rises steadily to "
    "50,000 on day 30. Suits a new sending domain or dedicated IP with an engaged audience."
)


def create(apps: Any, schema_editor: Any) -> None:
    plan = apps.get_model("campaigns", "WarmupPlan")
    plan.objects.get_or_create(
        name=NAME, defaults={"daily_limits": DAILY_LIMITS, "description": DESCRIPTION}
    )


def remove(apps: Any, schema_editor: Any) -> None:
    plan = apps.get_model("campaigns", "WarmupPlan")
    plan.objects.filter(name=NAME, warmups__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0022_pacing_warmup_guardrails_preflight")]

    operations = [migrations.RunPython(create, remove)]
