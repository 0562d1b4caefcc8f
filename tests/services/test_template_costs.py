"""A template's cost bounds where campaigns are saved and sent."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from pytest_django import Settings

from campaigns.models import Delivery, Send
from campaigns.services.campaigns import campaign_check
from campaigns.services.delivery import batch_deliver, send_launch
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, RecipientFactory, SubscriptionFactory, audience_with


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"subject": '{{ "x"|ljust:"20000000" }}'}, "subject", "Subject: the filter 'ljust'"),
        ({"body": "{% lorem 9 w %}"}, "body", "HTML body: the tag 'lorem' is not"),
        ({"text_body": "x" * 3000}, "text_body", "Text body: the rendered text is over"),
        ({"body": "{{ 'ab'|truncatechars:5000 }}"}, "body", "HTML body: the filter"),
    ],
)
def test_a_save_is_refused_with_the_field_named(
    settings: Settings, fields: dict[str, str], field: str, needle: str
) -> None:
    settings.OPSDASH_TEMPLATE_MAX_BYTES = 2000
    campaign = CampaignFactory.build(**fields)
    with pytest.raises(ValidationError) as caught:
        campaign_check(campaign=campaign)
    assert any(needle in message for message in caught.value.message_dict[field])


@pytest.mark.django_db(transaction=True)
def test_a_recipient_whose_data_is_over_the_limit_fails_alone_with_the_reason(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    settings.OPSDASH_TEMPLATE_MAX_BYTES = 2000
    audience = audience_with(2)
    long = RecipientFactory.create(email="long@example.com", attributes={"bio": "b" * 3000})
    SubscriptionFactory.create(recipient=long, audience=audience)
    campaign = CampaignFactory.create(
        audiences=[audience], text_body="Hi {{ recipient.attributes.bio }}", body=""
    )
    published: list[tuple[int, int, int, str]] = []
    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    for send_id, first, last, task_id in published:
        batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)

    rows = {row.recipient.email: row for row in Delivery.objects.filter(send=send)}
    failed = rows.pop("long@example.com")
    assert failed.status == Delivery.Status.FAILED
    assert "Text body: the rendered text is over the limit of 2,000 bytes" in failed.last_error
    assert {row.status for row in rows.values()} == {Delivery.Status.SENT}
    assert len(smtp_sink.messages) == 2
