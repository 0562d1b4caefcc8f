"""The two layouts opsdash ships: "House (responsive)", the default for new campaigns, and
"Plain". Staff edit them like any layout; this migration never overwrites an edited one.

Approvers, who decide what is sent, edit layouts (an edit reaches every future send of every
campaign that uses one); editors and auditors read them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

HOUSE = "House (responsive)"
PLAIN = "Plain"

# Table-based, 600 px, inline styles (the <style> block is inlined at compile time and keeps
# only its @media rules), dark-mode aware, readable with images off (the header falls back to
# text on the brand colour; the logo has alt text).
HOUSE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="supported-color-schemes" content="light dark">
<title>{{ campaign.name }}</title>
<style>
body { margin: 0; padding: 0; background-color: #f4f5f7; }
.wrapper { width: 100%; background-color: #f4f5f7; }
.container { width: 600px; max-width: 600px; background-color: #ffffff; }
.header { padding: 20px 32px; font-family: Arial, Helvetica, sans-serif; font-size: 20px; font-weight: bold; color: #ffffff; }
.content { padding: 24px 32px; font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 1.5; color: #1f2328; }
.content img { max-width: 100%; height: auto; }
.content a { color: #0b57d0; }
.footer { padding: 16px 32px 32px; font-family: Arial, Helvetica, sans-serif; font-size: 12px; line-height: 1.5; color: #57606a; }
.footer a { color: #57606a; text-decoration: underline; }
@media (max-width: 620px) {
  .container { width: 100% !important; }
  .header, .content, .footer { padding-left: 16px !important; padding-right: 16px !important; }
}
@media (prefers-color-scheme: dark) {
  body, .wrapper { background-color: #0d1117 !important; }
  .container { background-color: #161b22 !important; }
  .content { color: #e6edf3 !important; }
  .content a { color: #58a6ff !important; }
  .footer, .footer a { color: #8b949e !important; }
}
</style>
</head>
<body>
{% if preheader %}<span class="preheader" style="display: none; max-height: 0; max-width: 0; overflow: hidden; opacity: 0; mso-hide: all;">{{ preheader }}</span>{% endif %}
<table role="presentation" class="wrapper" width="100%" cellpadding="0" cellspacing="0" border="0">
<tr>
<td align="center" style="padding: 24px 8px;">
<table role="presentation" class="container" width="600" cellpadding="0" cellspacing="0" border="0">
<tr>
<td class="header" style="background-color: {{ layout.brand_color }};">{% if layout.logo_url %}<img src="{{ layout.logo_url }}" alt="{{ campaign.name }}" height="40" style="display: block; height: 40px; border: 0; color: #ffffff;">{% else %}{{ campaign.name }}{% endif %}</td>
</tr>
<tr>
<td class="content">
{{ content }}
</td>
</tr>
<tr>
<td class="footer">
<p style="margin: 0 0 8px;">{{ layout.footer_text }} <a href="{{ unsubscribe_url }}">Unsubscribe</a> &middot; <a href="{{ web_version_url }}">View in browser</a></p>
<p style="margin: 0;">{{ layout.legal_address|linebreaksbr }}</p>
</td>
</tr>
</table>
</td>
</tr>
</table>
</body>
</html>
"""

PLAIN_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{ campaign.name }}</title>
</head>
<body style="margin: 0; padding: 16px; font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 1.5;">
{% if preheader %}<span style="display: none; max-height: 0; overflow: hidden; opacity: 0;">{{ preheader }}</span>{% endif %}
{{ content }}
<p style="margin-top: 32px; font-size: 12px; color: #666666;">{{ layout.footer_text }} <a href="{{ unsubscribe_url }}">Unsubscribe</a> &middot; <a href="{{ web_version_url }}">View in browser</a><br>{{ layout.legal_address|linebreaksbr }}</p>
</body>
</html>
"""

LEGAL_ADDRESS = "Opsdash Ltd, 1 Example Street, London EC1A 1AA, United Kingdom"
READ = ["view_layout"]
WRITE = [f"{verb}_layout" for verb in ("add", "change", "delete")]
GRANTS = {"editor": READ, "approver": [*READ, *WRITE], "auditor": READ}


def create(apps: Any, schema_editor: Any) -> None:
    layout = apps.get_model("campaigns", "Layout")
    common = {"legal_address": LEGAL_ADDRESS, "brand_color": "#1f6feb"}
    layout.objects.get_or_create(
        name=HOUSE, defaults={**common, "html": HOUSE_HTML, "is_default": True}
    )
    layout.objects.get_or_create(name=PLAIN, defaults={**common, "html": PLAIN_HTML})


def remove(apps: Any, schema_editor: Any) -> None:
    layout = apps.get_model("campaigns", "Layout")
    layout.objects.filter(name__in=[HOUSE, PLAIN], campaigns__isnull=True).delete()


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
    dependencies = [("campaigns", "0025_layouts_and_body_formats")]

    operations = [
        migrations.RunPython(create, remove),
        migrations.RunPython(grant, revoke),
    ]
