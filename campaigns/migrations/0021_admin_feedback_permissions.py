"""Every staff role reads the suppression list and the bounce messages (read-only records,
next to the recipients every role sees). Approvers, who may already override a recipient's
consent, may also lift a suppression (delete_suppression) and dismiss a bounce message that
needs review (change_bouncemessage)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ = ["view_suppression", "view_bouncemessage", "view_deliveryevent", "view_channelhealth"]
GRANTS = {
    "editor": READ,
    "approver": [*READ, "delete_suppression", "change_bouncemessage"],
    "auditor": READ,
}


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
    dependencies = [("campaigns", "0020_channels_and_events")]

    operations = [migrations.RunPython(grant, revoke)]
