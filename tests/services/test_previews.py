from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.services.previews import PreviewProblem, campaign_preview
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
    data = {"subject": "s", "body": "{% lorem 99999 w %}"}
    with pytest.raises(PreviewProblem, match="HTML body: the tag 'lorem' is not allowed"):
        campaign_preview(campaign_id=None, data=data, recipient_email="")
