"""What a save warns about: images without alt text, links a mail client cannot follow, a
message Gmail clips, pasted markup removed, and personal fields empty for much of the audience
(counted in one query). Pre-flight reports the same rules from the same functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from pytest_django import DjangoAssertNumQueries, Settings

from campaigns.models import Campaign
from campaigns.services.authoring.checks import (
    WarningCode,
    content_warnings,
    empty_fields_problem,
)
from campaigns.services.preflight import preflight_run
from campaigns.services.rendering import campaign_compile_for
from tests.factories import (
    AudienceFactory,
    CampaignFactory,
    RecipientFactory,
    SubscriptionFactory,
    shipped_layout,
)

pytestmark = pytest.mark.django_db


def codes(campaign: Campaign) -> dict[str, str]:
    return {w.code: w.message for w in content_warnings(campaign=campaign)}


def test_a_clean_campaign_warns_about_nothing() -> None:
    campaign = CampaignFactory.create(
        body='<p>Hi</p><img src="https://x.example/a.png" alt="A chart">'
        '<a href="https://example.com">More</a><a href="{{ unsubscribe_url }}">Leave</a>'
    )
    assert codes(campaign) == {}


def test_images_without_alt_and_relative_links_are_named() -> None:
    campaign = CampaignFactory.create(
        body='<img src="https://x.example/a.png"><img src="https://x.example/b.png" alt=" ">'
        '<a href="/offers">Offers</a><a href="https://example.com">ok</a>'
    )
    found = codes(campaign)

    assert "2 images have no alt text" in found[WarningCode.IMAGE_ALT]
    assert "“https://x.example/a.png”" in found[WarningCode.IMAGE_ALT]
    assert "(1 of 4)" in found[WarningCode.LINK_NOT_ABSOLUTE]  # 4: the footer's two links too
    assert "“/offers”" in found[WarningCode.LINK_NOT_ABSOLUTE]


def test_a_message_over_102_kb_warns_at_save_and_in_preflight() -> None:
    campaign = CampaignFactory.create(body="<p>" + "word " * 22_000 + "</p>")

    assert "Gmail clips messages over 102 KB" in codes(campaign)[WarningCode.HTML_CLIPPED]
    findings = {f.code for f in preflight_run(campaign=campaign).findings}
    assert "html_clipped" in findings


def test_pasted_markup_removed_is_said() -> None:
    campaign = CampaignFactory.create(
        body_format=Campaign.BodyFormat.RICHTEXT,
        body='<p style="color:red">Hi <a href="{{ unsubscribe_url }}">x</a></p>',
    )
    assert "Removed the style attribute on <p>" in codes(campaign)[WarningCode.SANITISED]


def test_a_field_empty_for_much_of_the_audience_is_counted_in_one_query(
    settings: Settings, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    settings.OPSDASH_EMPTY_TAG_WARN_PERCENT = 10
    audience = AudienceFactory.create()
    people = [
        *RecipientFactory.create_batch(8, first_name="Ann", attributes={"city": "Oslo"}),
        RecipientFactory.create(first_name="", attributes={"city": ""}),
        RecipientFactory.create(first_name="", attributes={}),
    ]
    for person in people:
        SubscriptionFactory.create(recipient=person, audience=audience)
    campaign = CampaignFactory.create(
        audiences=[audience],
        subject="Hi {{ recipient.first_name }}",
        body="<p>{{ recipient.attributes.city }} {{ recipient.last_name|default:'x' }}</p>"
        '<a href="{{ unsubscribe_url }}">x</a>',
        text_body="",
    )

    with django_assert_num_queries(1):
        problem = empty_fields_problem(campaign=campaign)

    assert problem is not None
    assert "{{ recipient.first_name }} for 2 of 10" in problem
    assert "{{ recipient.attributes.city }} for 2 of 10" in problem
    assert "last_name" not in problem  # it has a fallback
    settings.OPSDASH_EMPTY_TAG_WARN_PERCENT = 20
    assert empty_fields_problem(campaign=campaign) is None  # 20 % is not over 20 %


def test_the_demo_campaign_uses_the_house_layout_with_a_markdown_body() -> None:
    shipped_layout()
    fixtures = sorted((Path(django_settings.BASE_DIR) / "fixtures").glob("0*.json"))
    call_command("loaddata", *[str(path) for path in fixtures], verbosity=0)

    campaign = Campaign.objects.get(pk=1)
    compiled = campaign_compile_for(campaign)

    assert campaign.layout is not None and campaign.layout.name == "House (responsive)"
    assert campaign.body_format == Campaign.BodyFormat.MARKDOWN
    assert compiled.html is not None
    assert json.loads((fixtures[-1]).read_text())[0]["fields"]["layout"] == ["House (responsive)"]
