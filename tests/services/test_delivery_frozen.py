"""A send delivers the content it launched with, whatever happens to its campaign meanwhile."""

from __future__ import annotations

from datetime import time

import pytest
from pytest_django import Settings

from campaigns.models import Campaign, Send
from campaigns.services import campaigns as services
from campaigns.services.delivery import batch_deliver, send_launch
from campaigns.services.delivery.compiled import compiled_for_send
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, UserFactory, audience_with

pytestmark = pytest.mark.django_db(transaction=True)

Published = list[tuple[int, int, int, str]]

LAUNCHED = {
    "subject": "Launch subject for {{ recipient.first_name }}",
    "text_body": "Launch text {{ unsubscribe_url }}",
    "body": '<p>Launch html</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    "reply_to": "launch@example.com",
}


def launched(campaign: Campaign, key: str = "once") -> tuple[Send, Published]:
    published: Published = []
    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key=key,
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    return send, published


def deliver(published: Published) -> None:
    for send_id, first, last, task_id in published:
        batch_deliver(send_id=send_id, first_id=first, last_id=last, task_id=task_id)


def bodies(message: object) -> str:
    return "".join(
        str(part.get_content())
        for part in message.walk()  # type: ignore[attr-defined]
        if part.get_content_maintype() == "text"
    )


def test_launch_freezes_the_exact_content_in_the_send() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], name="Spring", **LAUNCHED)
    send, _ = launched(campaign)
    assert Send.objects.get(pk=send.pk).content == {
        "name": "Spring",
        "from_email": campaign.from_email,
        "subject": LAUNCHED["subject"],
        "reply_to": LAUNCHED["reply_to"],
        "preheader": "",
        # Raw HTML with its own unsubscribe link and no <style>: compiled as written.
        "html_body": LAUNCHED["body"],
        "text_body": LAUNCHED["text_body"],
        "layout_id": None,
        "layout_version": None,
    }


def test_an_edit_during_a_running_send_changes_nothing_its_recipients_get(
    smtp_sink: SmtpSink, settings: Settings
) -> None:
    """A recurring campaign's occurrence is running; staff then edit the campaign."""
    settings.OPSDASH_FOUR_EYES = False
    campaign = CampaignFactory.create(
        audiences=[audience_with(3)],
        schedule_kind=Campaign.ScheduleKind.DAILY,
        schedule_time=time(9, 0),
        status=Campaign.Status.SCHEDULED,
        **LAUNCHED,
    )
    send, published = launched(campaign, key="manual:now")

    campaign.subject = "Edited subject"
    campaign.body = "<p>Edited html</p>"
    campaign.text_body = "Edited text {{ unsubscribe_url }}"
    campaign.reply_to = "edited@example.com"
    services.campaign_save(campaign=campaign, by=UserFactory.create())
    deliver(published)

    assert len(smtp_sink.messages) == 3
    for message in smtp_sink.messages:
        assert message["Subject"].startswith("Launch subject for ")
        assert message["Reply-To"] == "launch@example.com"
        assert "Launch text" in bodies(message) and "<p>Launch html</p>" in bodies(message)
        assert "Edited" not in bodies(message)
    assert Send.objects.get(pk=send.pk).content["subject"] == LAUNCHED["subject"]


def test_the_delivery_loop_never_reads_the_live_campaign(smtp_sink: SmtpSink) -> None:
    """Even a change that bypasses every service (a bulk update) does not reach a running send."""
    campaign = CampaignFactory.create(audiences=[audience_with(2)], **LAUNCHED)
    _, published = launched(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(subject="Bulk edit", body="<p>Bulk</p>")
    deliver(published)
    assert {m["Subject"].split(" for ")[0] for m in smtp_sink.messages} == {"Launch subject"}


def test_a_send_compiles_once_per_process_whatever_the_campaign_does() -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], **LAUNCHED)
    send, _ = launched(campaign)
    first, _ = compiled_for_send(Send.objects.get(pk=send.pk))
    Campaign.objects.filter(pk=campaign.pk).update(subject="Other")
    again, _ = compiled_for_send(Send.objects.select_related("campaign").get(pk=send.pk))
    assert again is first  # keyed by the send's id, not the campaign's version


def test_a_send_from_before_content_was_kept_freezes_it_on_first_use() -> None:
    campaign = CampaignFactory.create(subject="Old send")
    send = Send.objects.create(campaign=campaign, occurrence_key="once")
    compiled, _ = compiled_for_send(send)
    Campaign.objects.filter(pk=campaign.pk).update(subject="Later")
    assert Send.objects.get(pk=send.pk).content["subject"] == "Old send"
    assert compiled.campaign_id == campaign.pk
