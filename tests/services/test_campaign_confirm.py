"""What the confirmation pages count: exactly the rows a launch creates, after suppression."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files import File
from pytest_django import DjangoAssertNumQueries, Settings

from campaigns.models import Audience, Campaign, Delivery, Recipient, Send, Subscription
from campaigns.selectors.audiences import audience_exact_counts, audience_subscriber_counts
from campaigns.selectors.campaigns import campaign_cancel_plan, campaign_send_plan
from campaigns.services.audiences import recipient_unsubscribe
from campaigns.services.delivery import send_launch
from campaigns.services.imports import import_job_create, import_job_run, import_job_start
from tests.factories import (
    AudienceFactory,
    CampaignFactory,
    RecipientFactory,
    UserFactory,
    audience_with,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"
CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]

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


def test_the_channel_is_the_campaigns_own_esp_channel_by_name(settings: Settings) -> None:
    settings.OPSDASH_CHANNELS = ["relay=smtp", "marketing=postmark:broadcast", "mg=mailgun"]
    settings.OPSDASH_DEFAULT_CHANNEL = "relay"

    on_postmark = campaign_send_plan(campaign=CampaignFactory.create(channel="marketing"))
    on_mailgun = campaign_send_plan(campaign=CampaignFactory.create(channel="mg"))
    removed = campaign_send_plan(campaign=CampaignFactory.create(channel="gone"))

    assert str(on_postmark.channel) == "Postmark (“marketing” channel, stream broadcast)"
    assert str(on_mailgun.channel) == "Mailgun (“mg” channel)"
    assert "not configured" in str(removed.channel)


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


def test_the_confirmation_counts_audiences_exactly_while_the_list_has_older_numbers() -> None:
    cache.clear()
    campaign, readers, buyers = mixed_audiences()
    audience_subscriber_counts([readers.pk, buyers.pk])  # the Audience list cached its sizes
    Subscription.objects.create(recipient=RecipientFactory.create(), audience=buyers)
    plan = campaign_send_plan(campaign=campaign)
    sizes = {a.name: (a.subscribed, a.left_out) for a in plan.audiences}
    assert sizes == {readers.name: (4, 1), buyers.name: (4, 0)}
    assert plan.recipients == 6


def test_the_exact_counts_take_one_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    _campaign, readers, buyers = mixed_audiences()
    with django_assert_num_queries(1):
        counts = audience_exact_counts([readers.pk, buyers.pk])
    assert (counts[readers.pk].subscribed, counts[readers.pk].left_out) == (4, 1)


def test_an_import_shows_its_new_count_in_the_list_at_once(
    settings: Settings, tmp_path: Path, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    audience = AudienceFactory.create()
    assert audience_subscriber_counts([audience.pk]) == {audience.pk: 0}  # cached: 0
    by = UserFactory.create()
    with (FIXTURES / "valid.csv").open("rb") as handle:
        job = import_job_create(
            upload=File(handle, name="valid.csv"), audience=audience, created_by=by
        )
    import_job_start(job=job, columns=job.mapping["columns"], by=by, publish=lambda _pk: "task")
    with django_capture_on_commit_callbacks(execute=True):
        import_job_run(import_job_id=job.pk)
    subscribed = Subscription.objects.filter(audience=audience).count()
    assert subscribed > 0
    assert audience_subscriber_counts([audience.pk]) == {audience.pk: subscribed}


def test_an_unsubscribe_leaves_the_cached_count_behind(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    cache.clear()
    audience = audience_with(2)
    assert audience_subscriber_counts([audience.pk]) == {audience.pk: 2}
    subscription = audience.subscriptions.first()
    assert subscription is not None
    with django_capture_on_commit_callbacks(execute=True):
        recipient_unsubscribe(recipient_id=subscription.recipient_id, send_id=0, reason="test")
    assert audience_subscriber_counts([audience.pk]) == {audience.pk: 1}
