"""factory_boy factories for the domain models.

Call ``XFactory.create(...)`` (typed: it returns the model) rather than ``XFactory(...)``,
which goes through factory_boy's untyped metaclass and is ``Any`` to the type checker.
"""

from __future__ import annotations

import importlib

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from factory.declarations import LazyAttribute, LazyFunction, PostGeneration, Sequence, SubFactory
from factory.django import DjangoModelFactory, Password

from campaigns.models import Audience, Campaign, Layout, Recipient, Subscription


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = Sequence(lambda n: f"staff{n}")
    email = LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = Password("correct-horse-battery-staple")


class AudienceFactory(DjangoModelFactory[Audience]):
    class Meta:
        model = Audience

    name = Sequence(lambda n: f"Audience {n}")


class RecipientFactory(DjangoModelFactory[Recipient]):
    class Meta:
        model = Recipient

    email = Sequence(lambda n: f"person{n}@example.com")
    first_name = Sequence(lambda n: f"First{n}")
    last_name = "Tester"
    attributes = LazyFunction(lambda: {"city": "Oslo"})


class SubscriptionFactory(DjangoModelFactory[Subscription]):
    class Meta:
        model = Subscription

    recipient = SubFactory(RecipientFactory)
    audience = SubFactory(AudienceFactory)


def _audiences_set(
    campaign: Campaign, create: bool, extracted: list[Audience] | None, **kwargs: object
) -> None:
    if create and extracted:
        campaign.audiences.set(extracted)


class CampaignFactory(DjangoModelFactory[Campaign]):
    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = Sequence(lambda n: f"Campaign {n}")
    subject = "Hello {{ recipient.first_name }}"
    from_email = "Team <team@example.com>"
    text_body = (
        "Hi {{ recipient.first_name }} from {{ recipient.attributes.city }}.\n{{ unsubscribe_url }}"
    )
    body_format = Campaign.BodyFormat.HTML
    body = "<p>Hi {{ recipient.first_name }}</p>"
    # @factory.post_generation spelled as the declaration it is: the decorator is untyped.
    audiences = PostGeneration(_audiences_set)


def audience_with(count: int, **recipient_fields: object) -> Audience:
    """An audience of ``count`` subscribed, active recipients."""
    audience = AudienceFactory.create()
    for recipient in RecipientFactory.create_batch(count, **recipient_fields):
        SubscriptionFactory.create(recipient=recipient, audience=audience)
    return audience


def shipped_layout(name: str = "House (responsive)") -> Layout:
    """A layout the data migration ships (a transactional test's flush removes them)."""
    shipped = importlib.import_module("campaigns.migrations.0026_shipped_layouts")
    shipped.create(django_apps, None)
    return Layout.objects.get(name=name)
