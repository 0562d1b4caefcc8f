"""factory_boy factories for the domain models."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from campaigns.models import Audience, Campaign, Recipient, Subscription


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("correct-horse-battery-staple")


class AudienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Audience

    name = factory.Sequence(lambda n: f"Audience {n}")


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recipient

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Tester"
    attributes = factory.LazyFunction(lambda: {"city": "Oslo"})


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    recipient = factory.SubFactory(RecipientFactory)
    audience = factory.SubFactory(AudienceFactory)


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello {{ recipient.first_name }}"
    from_email = "Team <team@example.com>"
    text_body = (
        "Hi {{ recipient.first_name }} from {{ recipient.attributes.city }}.\n{{ unsubscribe_url }}"
    )
    html_body = "<p>Hi {{ recipient.first_name }}</p>"

    @factory.post_generation
    def audiences(self, create: bool, extracted: list[Audience] | None, **kwargs: object) -> None:
        if create and extracted:
            self.audiences.set(extracted)


def audience_with(count: int, **recipient_fields: object) -> Audience:
    """An audience of ``count`` subscribed, active recipients."""
    audience = AudienceFactory()
    for recipient in RecipientFactory.create_batch(count, **recipient_fields):
        SubscriptionFactory(recipient=recipient, audience=audience)
    return audience
