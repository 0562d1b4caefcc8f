"""Layouts: refused with the field named when they cannot frame a body, versioned and audited
on every edit, and frozen into a send at launch so a later edit never reaches it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import AuditEntry, Campaign, Layout, Send
from campaigns.services.authoring.layouts import layout_save
from campaigns.services.delivery import send_launch
from campaigns.services.delivery.compiled import compiled_for_send
from campaigns.services.rendering import message_render
from tests.factories import CampaignFactory, UserFactory, audience_with, shipped_layout

pytestmark = pytest.mark.django_db

FRAME = "<html><body>{{ content }}<a href='{{ unsubscribe_url }}'>Leave</a></body></html>"


def new_layout(**fields: object) -> Layout:
    values: dict[str, object] = {"name": "Test frame", "html": FRAME, "legal_address": "Here"}
    values.update(fields)
    return Layout(**values)


@pytest.mark.parametrize(
    ("html", "needle"),
    [
        ("<p>No slot</p>", "the layout has no {{ content }} slot"),
        ("{{ content }}<hr>{{content}}", "{{ content }} appears 2 times"),
        ("{{ content }}{{ layout.colour }}", "the layout has no field 'colour'"),
        ("{{ content }}{{ recipient.salary }}", "the recipient has no field 'salary'"),
        ("{{ content }}{{ secret_key }}", "unknown field {{ secret_key }}"),
        ("{% load static %}{{ content }}", "the tag 'load' is not allowed"),
        ("{{ content }}{% include 'x.html' %}", "the tag 'include' is not allowed"),
        ("{% if recipient.first_name %}{% endif %}{{ content }}", "differs per recipient"),
        ("{{ content }}<p>{{ layout.logo_url </p>", "is not closed"),
    ],
)
def test_a_layout_that_cannot_frame_a_body_is_refused_naming_the_html(
    html: str, needle: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        layout_save(layout=new_layout(html=html), by=UserFactory.create())

    messages = refused.value.message_dict["html"]
    assert any(needle in message for message in messages), messages
    assert not Layout.objects.filter(name="Test frame").exists()
    assert not AuditEntry.objects.filter(layout__name="Test frame").exists()


def test_a_bad_brand_colour_is_refused_on_its_field() -> None:
    with pytest.raises(ValidationError) as refused:
        layout_save(layout=new_layout(brand_color="red"), by=UserFactory.create())
    assert refused.value.message_dict["brand_color"] == ["Write the colour as #RRGGBB."]


def test_the_shipped_layouts_pass_their_own_checks() -> None:
    for name in ("House (responsive)", "Plain"):
        layout = shipped_layout(name)
        layout.legal_address = "Edited"
        layout_save(layout=layout, by=None)
        assert Layout.objects.get(name=name).version == 2


def test_each_content_edit_is_a_new_version_and_is_audited() -> None:
    editor = UserFactory.create()
    layout = layout_save(layout=new_layout(), by=editor)
    assert layout.version == 1

    layout.html = FRAME.replace("Leave", "Unsubscribe")
    layout_save(layout=layout, by=editor)
    layout.name = "Renamed frame"  # not what it produces: same version, still audited
    layout_save(layout=layout, by=editor)
    layout_save(layout=layout, by=editor)  # nothing changed: nothing recorded

    stored = Layout.objects.get(pk=layout.pk)
    assert stored.version == 2 and stored.updated_by == editor
    entries = list(AuditEntry.objects.filter(layout=layout).order_by("id"))
    assert [e.action for e in entries] == ["created", "edited", "edited"]
    assert entries[1].changes == {"html": layout.html.replace("Renamed", ""), "version": 2}
    assert entries[2].changes == {"name": "Renamed frame", "version": 2}
    assert entries[1].actor == editor


def test_one_default_at_most() -> None:
    house = shipped_layout()
    assert house.is_default
    other = layout_save(layout=new_layout(is_default=True), by=None)

    assert list(Layout.objects.filter(is_default=True)) == [other]


def launch(campaign: Campaign) -> Send:
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    return send


def test_launch_freezes_the_compiled_content_and_a_later_layout_edit_changes_nothing() -> None:
    layout = shipped_layout()
    campaign = CampaignFactory.create(
        audiences=[audience_with(1, first_name="Ada")],
        body_format=Campaign.BodyFormat.MARKDOWN,
        body="Hi **{{ recipient.first_name }}**",
        text_body="",
        layout=layout,
        preheader="Spring",
    )
    send = launch(campaign)
    frozen = dict(Send.objects.get(pk=send.pk).content)

    assert frozen["layout_id"] == layout.pk and frozen["layout_version"] == 1
    assert "Hi <strong>{{ recipient.first_name }}</strong>" in frozen["html_body"]
    assert "font-family: Arial" in frozen["html_body"]  # compiled: CSS inlined
    assert "\nHi {{ recipient.first_name }}\n" in frozen["text_body"]
    assert frozen["preheader"] == "Spring"

    layout.legal_address = "A new address, after the launch"
    layout.html = layout.html.replace("View in browser", "Read online")
    layout_save(layout=layout, by=None)
    compiled, _frame = compiled_for_send(Send.objects.get(pk=send.pk))
    rendered = message_render(
        compiled,
        recipient={"email": "a@example.com", "first_name": "Ada", "attributes": {}},
        unsubscribe_url="https://x/u/",
        web_version_url="https://x/m/",
    )

    assert Send.objects.get(pk=send.pk).content == frozen
    assert "Hi <strong>Ada</strong>" in rendered.html
    assert "View in browser" in rendered.html and "Read online" not in rendered.html
    assert "A new address" not in rendered.html


def test_a_send_frozen_before_layouts_still_delivers() -> None:
    """Content frozen by an earlier version: no preheader or layout keys, raw HTML."""
    campaign = CampaignFactory.create(audiences=[audience_with(1)])
    send = launch(campaign)
    Send.objects.filter(pk=send.pk).update(
        content={
            "name": "Old",
            "subject": "Old {{ recipient.first_name }}",
            "from_email": "team@example.com",
            "reply_to": "",
            "text_body": "Old text",
            "html_body": "<p>Old {{ recipient.first_name }}</p>",
        }
    )
    compiled, _frame = compiled_for_send(Send.objects.get(pk=send.pk))
    rendered = message_render(
        compiled,
        recipient={"email": "a@example.com", "first_name": "Bo", "attributes": {}},
        unsubscribe_url="https://x/u/",
    )
    assert (rendered.subject, rendered.html) == ("Old Bo", "<p>Old Bo</p>")


def test_a_layout_in_use_cannot_be_deleted() -> None:
    from django.db.models import ProtectedError

    layout = shipped_layout("Plain")
    CampaignFactory.create(layout=layout)
    with pytest.raises(ProtectedError):
        layout.delete()
