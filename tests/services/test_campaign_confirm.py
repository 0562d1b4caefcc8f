"""What the confirmation pages count: exactly the rows a launch creates, after suppression."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from pytest_django import DjangoAssertNumQueries, Settings

from campaigns.models import Audience, Campaign, Delivery, Recipient, Send, Subscription
from campaigns.selectors.audiences import audience_subscriber_counts
from campaigns.selectors.campaigns import campaign_cancel_plan, campaign_send_plan
from campaigns.services.delivery import send_launch
from tests.factories import AudienceFactory, CampaignFactory, RecipientFactory, audience_with

pytestmark = pytest.mark.django_db


def mixed_audiences() -> tuple[Campaign, Audience, Audience]:
    """Two lists sharing one person, with a bounced and an unsubscribed member."""
    readers, buyers = audience_with(3), audience_with(2)
    shared = readers.subscriptions.first()
    assert shared is not None
    Subscription.objects.create(recipient=shared.recipient, audience=buyers)
    bounced = RecipientFactory.create(status=Recipient.Status.BOUNCED)
    Subscription.objects.create(recipient=bounced, audience=readers)
    Subscription.objects.create(
        recipient=RecipientFactory.create(),
        audience=readers,
        status=Subscription.Status.UNSUBSCRIBED,
    )
    return CampaignFactory.create(audiences=[readers, buyers]), readers, buyers


def test_the_send_plan_counts_the_rows_the_launch_creates() -> None:
    cache.clear()
    campaign, readers, buyers = mixed_audiences()
    plan = campaign_send_plan(campaign=campaign)
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    assert plan.recipients == Delivery.objects.filter(send=send).count() == 5
    assert plan.left_out == 1  # the bounced address
    assert [(a.name, a.subscribed) for a in plan.audiences] == sorted(
        [(readers.name, 4), (buyers.name, 3)]
    )


def test_the_channel_is_the_smtp_relay_from_settings(settings: Settings) -> None:
    settings.EMAIL_HOST, settings.EMAIL_PORT = "mail.example.com", 587
    plan = campaign_send_plan(campaign=CampaignFactory.create())
    assert str(plan.channel) == "SMTP relay mail.example.com:587"
    assert plan.recipients == 0 and plan.audiences == []


def test_the_cancel_plan_counts_the_rows_not_yet_sent() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(4)])
    send = send_launch(
        campaign_id=campaign.pk, occurrence_key="once", trigger="manual", publish=lambda *a: None
    )
    assert send is not None
    first = Delivery.objects.filter(send=send).order_by("id").first()
    assert first is not None
    Delivery.objects.filter(pk=first.pk).update(status=Delivery.Status.SENT)
    plan = campaign_cancel_plan(campaign=campaign)
    assert plan is not None and (plan.not_sent, plan.sent) == (3, 1)
    Send.objects.filter(pk=send.pk).update(status=Send.Status.CANCELLED)
    assert campaign_cancel_plan(campaign=campaign) is None


def test_audience_sizes_take_one_query_for_many_and_none_when_cached(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    cache.clear()
    audiences = [audience_with(n) for n in (1, 2, 3)] + [AudienceFactory.create()]
    ids = [a.pk for a in audiences]
    with django_assert_num_queries(1):
        counts = audience_subscriber_counts(ids)
    assert [counts[pk] for pk in ids] == [1, 2, 3, 0]
    with django_assert_num_queries(0):
        assert audience_subscriber_counts(ids) == counts
