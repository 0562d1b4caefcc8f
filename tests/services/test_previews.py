from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.models import Layout
from campaigns.services.audiences import message_links
from campaigns.services.previews import PreviewProblem, campaign_preview, dark_variant
from tests.factories import CampaignFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def test_posted_fields_win_and_the_stored_campaign_fills_the_rest() -> None:
    campaign = CampaignFactory.create(
        subject="Stored {{ recipient.first_name }}", text_body="Stored body"
    )
    RecipientFactory.create(email="ada@example.com", first_name="Ada")
    preview = campaign_preview(
        campaign_id=campaign.pk,
        data={"text_body": "Posted body for {{ recipient.first_name }}"},
        recipient_email="ada@example.com",
    )
    assert (preview.subject, preview.text) == ("Stored Ada", "Posted body for Ada")
    assert preview.recipient == "ada@example.com"


def test_a_new_campaign_previews_from_the_form_alone_for_the_sample_recipient() -> None:
    preview = campaign_preview(
        campaign_id=None,
        data={"subject": "Hi {{ recipient.first_name }}", "text_body": "t"},
        recipient_email="",
    )
    assert preview.subject == "Hi Sample"


@pytest.mark.parametrize(
    ("data", "recipient_email", "message"),
    [
        ({"subject": "s", "text_body": "{% for %}"}, "", "does not compile"),
        ({"subject": "s", "text_body": "t"}, "nobody@example.com", "No recipient has this"),
    ],
)
def test_a_preview_that_cannot_be_drawn_says_why(
    data: dict[str, str], recipient_email: str, message: str
) -> None:
    with pytest.raises(PreviewProblem, match=message):
        campaign_preview(campaign_id=None, data=data, recipient_email=recipient_email)


def test_a_preview_over_a_limit_for_the_chosen_recipient_says_which_part(
    settings: Settings,
) -> None:
    settings.OPSDASH_TEMPLATE_MAX_BYTES = 2000
    RecipientFactory.create(email="long@example.com", attributes={"bio": "b" * 3000})
    data = {"subject": "s", "text_body": "{{ recipient.attributes.bio }}"}
    assert campaign_preview(campaign_id=None, data=data, recipient_email="").text == ""
    with pytest.raises(PreviewProblem, match="Text body: the rendered text is over the limit"):
        campaign_preview(campaign_id=None, data=data, recipient_email="long@example.com")


def test_a_preview_of_a_refused_tag_names_the_field_and_the_tag() -> None:
    data = {"subject": "s", "body_format": "html", "body": "{% lorem 99999 w %}"}
    with pytest.raises(PreviewProblem, match="HTML body: the tag 'lorem' is not allowed"):
        campaign_preview(campaign_id=None, data=data, recipient_email="")


LAYOUT_HTML = (
    "<html><head><style>td { color: #222222; } "
    "@media (prefers-color-scheme: dark) { td { color: #eeeeee !important; } }</style></head>"
    "<body><table><tr><td>{{ content }}</td></tr></table>"
    '<p>{{ layout.legal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    "</body></html>"
)


def a_layout() -> Layout:
    return Layout.objects.create(
        name="Brand", html=LAYOUT_HTML, brand_color="#123456", legal_address="1 Main St, Oslo"
    )


def test_the_preview_shows_the_message_the_send_will_send_in_its_layout() -> None:
    layout = a_layout()
    RecipientFactory.create(email="ada@example.com", first_name="Ada")
    preview = campaign_preview(
        campaign_id=None,
        data={
            "subject": "Hi {{ recipient.first_name }}",
            "from_email": "News <news@example.com>",
            "preheader": "Good news, {{ recipient.first_name }}",
            "body_format": "markdown",
            "body": "# Hello {{ recipient.first_name }}",
            "layout": str(layout.pk),
            "text_body": "",
        },
        recipient_email="ada@example.com",
    )
    assert "Hello Ada" in preview.html and "1 Main St, Oslo" in preview.html
    assert 'style="' in preview.html  # the layout's CSS inlined, as a send has it
    assert "Hello Ada" in preview.text and "<h1" not in preview.text  # generated text part
    assert (preview.from_email, preview.preheader) == ("News <news@example.com>", "Good news, Ada")
    # The header a test message carries: a real one-click link that unsubscribes nobody.
    test_links = message_links(recipient_id=0, send_id=0)
    assert preview.list_unsubscribe == f"<{test_links.unsubscribe_url}>"
    assert "(prefers-color-scheme: dark)" not in preview.html_dark
    assert preview.removed == []


def test_the_preview_uses_the_stored_layout_unless_the_form_posts_another() -> None:
    layout = a_layout()
    campaign = CampaignFactory.create(body_format="richtext", body="<p>Body</p>", layout=layout)
    stored = campaign_preview(campaign_id=campaign.pk, data={}, recipient_email="")
    assert "1 Main St, Oslo" in stored.html
    none = campaign_preview(campaign_id=campaign.pk, data={"layout": ""}, recipient_email="")
    assert "1 Main St, Oslo" not in none.html and "Body" in none.html


def test_a_preview_with_a_layout_since_deleted_says_so() -> None:
    with pytest.raises(PreviewProblem, match="layout no longer exists"):
        campaign_preview(
            campaign_id=None,
            data={"subject": "s", "body": "b", "body_format": "markdown", "layout": "999999"},
            recipient_email="",
        )


def test_the_preview_names_what_the_sanitiser_left_out() -> None:
    preview = campaign_preview(
        campaign_id=None,
        data={"subject": "s", "body_format": "richtext", "body": "<p>Hi</p><script>x()</script>"},
        recipient_email="",
    )
    assert "<script" not in preview.html
    assert any("script" in sentence for sentence in preview.removed), preview.removed


def test_the_dark_variant_makes_the_dark_mode_rules_apply_and_the_light_ones_not() -> None:
    html = (
        "<style>@media (prefers-color-scheme: dark) { a { color: white } }"
        "@media screen and (prefers-color-scheme:light) { a { color: black } }</style>"
    )
    dark = dark_variant(html)
    assert "@media (min-width: 0px) { a { color: white } }" in dark
    assert "@media screen and (max-width: 0px) { a { color: black } }" in dark
