"""Approvers may re-subscribe opted-out recipients and change a recipient's consent status:
both override what a person asked for, so editors and auditors may not."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {"approver": ["resubscribe_recipient", "change_recipient_status"]}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("campaigns")
    stub = getattr(app_config, "models_module", None) is None
    if stub:  # see 0002: create_permissions skips app configs without models
        app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    if stub:
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="campaigns", codename__in=codenames
            )
        )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, codenames in GRANTS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*group.permissions.filter(codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0012_consent_and_frozen_content")]

    operations = [migrations.RunPython(grant, revoke)]
