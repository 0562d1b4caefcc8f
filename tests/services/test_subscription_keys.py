"""Subscription keys are kept by Django, not database checks: deletes must still cascade."""

from __future__ import annotations

import pytest

from campaigns.models import Subscription
from tests.factories import AudienceFactory, RecipientFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_deleting_a_recipient_removes_its_subscriptions() -> None:
    kept, gone = RecipientFactory.create(), RecipientFactory.create()
    audience = AudienceFactory.create()
    SubscriptionFactory.create(recipient=kept, audience=audience)
    SubscriptionFactory.create(recipient=gone, audience=audience)
    gone.delete()
    assert list(Subscription.objects.values_list("recipient_id", flat=True)) == [kept.pk]


def test_deleting_an_audience_removes_its_subscriptions() -> None:
    recipient = RecipientFactory.create()
    kept, gone = AudienceFactory.create(), AudienceFactory.create()
    SubscriptionFactory.create(recipient=recipient, audience=kept)
    SubscriptionFactory.create(recipient=recipient, audience=gone)
    gone.delete()
    assert list(Subscription.objects.values_list("audience_id", flat=True)) == [kept.pk]
