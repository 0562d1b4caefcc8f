"""A default warm-up plan staff can edit or copy: 30 days from 50 to 50,000 messages per
mailbox provider per day, doubling for the first week, then rising steadily.

Every role reads the warm-up plans and warm-ups; approvers, who decide what is sent, put a
domain or channel on a plan and edit the plans."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ = ["view_warmupplan", "view_warmup"]
WRITE = [
    f"{verb}_{model}" for verb in ("add", "change", "delete") for model in ("warmupplan", "warmup")
]
GRANTS = {"editor": READ, "approver": [*READ, *WRITE], "auditor": READ}

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


def grant(apps: Any, schema_editor: Any) -> None:
    app_config = apps.get_app_config("campaigns")
    stub = getattr(app_config, "models_module", None) is None
    if stub:  # see 0002: create_permissions skips app configs without models
        app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    if stub:
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.add(
            *permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames)
        )


def revoke(apps: Any, schema_editor: Any) -> None:
    group_model = apps.get_model("auth", "Group")
    for name, codenames in GRANTS.items():
        group = group_model.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*group.permissions.filter(codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0022_pacing_warmup_guardrails_preflight")]

    operations = [
        migrations.AlterModelOptions(
            name="warmupplan", options={"ordering": ["name"], "verbose_name": "warm-up plan"}
        ),
        migrations.AlterModelOptions(
            name="warmup",
            options={"ordering": ["target_kind", "target"], "verbose_name": "warm-up"},
        ),
        migrations.RunPython(create, remove),
        migrations.RunPython(grant, revoke),
    ]
