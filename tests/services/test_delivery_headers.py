"""Header injection is refused when the campaign is composed, before anything is sent."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Campaign
from campaigns.services.campaigns import campaign_check


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hello\r\nBcc: everyone@example.com"),
        ("subject", "Hello\nthere"),
        ("subject", "Hello%0D%0ABcc: everyone@example.com"),
        ("subject", "Hello\u2028there"),
        ("from_email", "Team <team@example.com>\r\nBcc: everyone@example.com"),
        ("from_email", "Team%0a <team@example.com>"),
        ("reply_to", "replies@example.com\nBcc: everyone@example.com"),
        ("name", "News\r\nX-Evil: 1"),
    ],
)
def test_line_breaks_in_subjects_names_and_addresses_are_refused_at_compose_time(
    field: str, value: str
) -> None:
    campaign = Campaign(name="News", subject="Hello", from_email="team@example.com", text_body="Hi")
    setattr(campaign, field, value)

    with pytest.raises(ValidationError) as caught:
        campaign_check(campaign=campaign)

    assert field in caught.value.message_dict


def test_a_clean_campaign_passes_the_check() -> None:
    campaign = Campaign(
        name="News",
        subject="Hello {{ recipient.first_name }}",
        from_email="Team <team@example.com>",
        reply_to="replies@example.com",
        text_body="Hi",
    )

    campaign_check(campaign=campaign)
