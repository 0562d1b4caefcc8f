"""The staff roles as groups: editor, approver and auditor.

Permissions are created first (post_migrate has not run yet on a fresh database), then each
group is given exactly its set, so running this again only re-asserts the same grants.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("auth", "contenttypes", "campaigns", "django_celery_beat", "django_celery_results")

CAMPAIGN_MODELS = (
    "campaign",
    "send",
    "delivery",
    "recipient",
    "audience",
    "subscription",
    "importjob",
    "auditentry",
    "tasklink",
)
CELERY_VIEWS = (
    ("django_celery_beat", "periodictask"),
    ("django_celery_beat", "crontabschedule"),
    ("django_celery_beat", "clockedschedule"),
    ("django_celery_beat", "intervalschedule"),
    ("django_celery_beat", "solarschedule"),
    ("django_celery_results", "taskresult"),
    ("django_celery_results", "groupresult"),
)

READ_ALL = [("campaigns", f"view_{model}") for model in CAMPAIGN_MODELS] + [
    (app, f"view_{model}") for app, model in CELERY_VIEWS
]

ROLES = {
    # Composes campaigns, imports recipients, sends tests; cannot approve, schedule or send.
    "editor": READ_ALL
    + [
        ("campaigns", "add_campaign"),
        ("campaigns", "change_campaign"),
        ("campaigns", "delete_campaign"),
        ("campaigns", "send_test_campaign"),
        ("campaigns", "add_importjob"),
        ("campaigns", "change_importjob"),
        ("campaigns", "add_recipient"),
        ("campaigns", "change_recipient"),
        ("campaigns", "add_audience"),
        ("campaigns", "change_audience"),
        ("campaigns", "add_subscription"),
        ("campaigns", "change_subscription"),
    ],
    # Approves, schedules and sends what editors composed; does not edit content.
    "approver": READ_ALL
    + [
        ("campaigns", "approve_campaign"),
        ("campaigns", "send_campaign"),
    ],
    # Reads everything, changes nothing.
    "auditor": [*READ_ALL, ("auth", "view_user"), ("auth", "view_group")],
}


def create_role_groups(apps, schema_editor):
    for app_label in APPS:
        # Migration app configs are stubs without models_module, which create_permissions
        # takes as "this app has no models"; mark them as having models while it runs.
        app_config = apps.get_app_config(app_label)
        stub = getattr(app_config, "models_module", None) is None
        if stub:
            app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        if stub:
            app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in grants
        ]
        group.permissions.set(permissions)


def remove_role_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("django_celery_results", "0014_alter_taskresult_status"),
    ]

    operations = [migrations.RunPython(create_role_groups, remove_role_groups)]
