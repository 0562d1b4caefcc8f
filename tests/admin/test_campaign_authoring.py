"""The campaign editor: the body format and its editor, the format switch, layouts, warnings."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from campaigns.models import Campaign, Layout
from tests.admin.helpers import campaign_form_data, user_with_roles
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

CONVERT = "admin:campaigns_campaign_convert_body"
ADD = "admin:campaigns_campaign_add"


def logged_in(*roles: str, **fields: object) -> Client:
    client = Client()
    client.force_login(user_with_roles(*roles, **fields))
    return client


def start_tag(page: str, opening: str) -> str:
    """The whole start tag that begins with ``opening`` (the page has exactly one)."""
    (tag,) = re.findall(re.escape(opening) + r"[^>]*>", page)
    return str(tag)


def disabled(tag: str) -> bool:
    return re.search(r"\sdisabled(?=[\s>])", tag) is not None


def a_layout(**fields: object) -> Layout:
    values: dict[str, object] = {
        "name": "Brand",
        "html": "<table><tr><td>{{ content }}</td></tr></table><p>1 Main St</p>",
        "brand_color": "#123456",
        "legal_address": "1 Main St",
        **fields,
    }
    return Layout.objects.create(**values)


def test_a_new_campaign_opens_in_rich_text_inside_the_default_layout() -> None:
    Layout.objects.update(is_default=False)
    default = a_layout(name="House", is_default=True)
    a_layout(name="Other")
    page = logged_in("editor").get(reverse(ADD)).content.decode()
    assert "<trix-editor" in page and "unfold/forms/js/trix/trix.js" in page
    assert f'<option value="{default.pk}" selected>' in page
    assert "No layout (send the body as it is)" in page
    assert '<option value="richtext" selected>' in page
    # Both editors are drawn; only the rich text one posts a body.
    assert not disabled(start_tag(page, '<input type="hidden" name="body"'))
    assert disabled(start_tag(page, '<textarea name="body"'))


def test_a_markdown_campaign_opens_in_the_monospace_editor() -> None:
    campaign = CampaignFactory.create(body_format="markdown", body="# Hello")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    page = logged_in("editor").get(url).content.decode()
    assert disabled(start_tag(page, '<input type="hidden" name="body"'))
    source = start_tag(page, '<textarea name="body"')
    assert "opsdash-source" in source and not disabled(source)
    assert "# Hello" in page.split(source, 1)[1].split("</textarea>", 1)[0]


def test_a_saved_campaign_keeps_its_format_layout_preheader_and_archive_choice() -> None:
    layout = a_layout()
    data = campaign_form_data(
        body_format="markdown",
        body="# Hi {{ recipient.first_name }}",
        layout=layout.pk,
        preheader="Read this, {{ recipient.first_name }}",
        text_body="",
        web_archive="on",
    )
    assert logged_in("editor").post(reverse(ADD), data).status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.body_format, campaign.body, campaign.layout) == (
        "markdown",
        "# Hi {{ recipient.first_name }}",
        layout,
    )
    assert campaign.preheader == "Read this, {{ recipient.first_name }}"
    assert campaign.web_archive and campaign.text_body == ""


@pytest.mark.parametrize("body_format", ["richtext", "markdown", "html"])
def test_a_wrong_personalisation_tag_is_refused_in_every_format(body_format: str) -> None:
    data = campaign_form_data(body_format=body_format, body="<p>Hi {{ recipient.salary }}</p>")
    response = logged_in("editor").post(reverse(ADD), data)
    assert response.status_code == 200
    assert escape("no field 'salary'") in response.content.decode()
    assert not Campaign.objects.exists()


def test_saving_rich_text_the_sanitiser_cleans_says_what_it_left_out() -> None:
    data = campaign_form_data(
        body_format="richtext", body="<p>Hi</p><script>alert(1)</script>", text_body=""
    )
    response = logged_in("editor").post(reverse(ADD), data, follow=True)
    page = response.content.decode()
    assert Campaign.objects.count() == 1
    assert "The pasted text was cleaned up" in page and "script" in page


def test_saving_clean_content_shows_no_content_warning() -> None:
    data = campaign_form_data(body_format="richtext", body="<p>Hi <strong>there</strong></p>")
    response = logged_in("editor").post(reverse(ADD), data, follow=True)
    assert "The pasted text was cleaned up" not in response.content.decode()


def test_switching_from_markdown_to_rich_text_converts_the_body_and_says_so() -> None:
    response = logged_in("editor").post(
        reverse(CONVERT),
        {
            "body": "# Hello {{ recipient.first_name }}\n\n[Stop]({{ unsubscribe_url }})",
            "from_format": "markdown",
            "to_format": "richtext",
        },
    )
    data = response.json()
    assert "<h1>Hello {{ recipient.first_name }}</h1>" in data["body"]
    assert 'href="{{ unsubscribe_url }}"' in data["body"]
    assert data["message"].startswith("The body was converted from Markdown to Rich text.")


def test_switching_html_to_rich_text_names_what_the_editor_cannot_keep() -> None:
    response = logged_in("editor").post(
        reverse(CONVERT),
        {"body": "<p>Hi</p><script>x()</script>", "from_format": "html", "to_format": "richtext"},
    )
    data = response.json()
    assert "<script>" not in data["body"] and "Hi" in data["body"]
    assert "script" in data["message"]


def test_the_format_switch_refuses_an_unknown_format_in_words() -> None:
    response = logged_in("editor").post(
        reverse(CONVERT), {"body": "x", "from_format": "markdown", "to_format": "docx"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Choose rich text, Markdown or HTML as the body format."


def test_the_format_switch_is_for_those_who_compose() -> None:
    posted = {"body": "x", "from_format": "markdown", "to_format": "html"}
    assert logged_in("auditor").post(reverse(CONVERT), posted).status_code == 403
    assert logged_in("editor").get(reverse(CONVERT)).status_code == 405
    assert Client().post(reverse(CONVERT), posted).status_code == 302  # to the login page
