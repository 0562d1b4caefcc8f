"""Sending channels: configuration, what ESP answers mean, and delivery through each channel,
against the real database, a real SMTP sink and the local ESP emulator."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
from anymail.exceptions import AnymailAPIError
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings
from urllib3.connection import HTTPConnection
from urllib3.exceptions import NewConnectionError, ProtocolError

from campaigns.models import AuditEntry, Campaign, Delivery, Recipient, Send
from campaigns.services.channels import (
    ChannelConfig,
    ChannelResult,
    Outcome,
    Outgoing,
    channel_for,
    channel_names,
    channels_parse,
)
from campaigns.services.channels.esp import (
    AnymailChannel,
    anymail_error_result,
    http_failure,
    network_failure,
    postmark_result,
)
from campaigns.services.channels.postmark import PostmarkBatchChannel, batch_results
from campaigns.services.channels.smtp import SmtpChannel
from campaigns.services.delivery import (
    NextStep,
    batch_deliver,
    send_cancel,
    send_launch,
    send_pause,
    testmail,
)
from campaigns.services.delivery.compiled import compiled_for_send
from campaigns.services.delivery.outcomes import journal_apply, journal_entry
from campaigns.services.delivery.state import ControlProbe
from campaigns.services.rendering import message_render, recipient_fields
from campaigns.services.verp import verp_delivery_id
from opsdash.smtp_sink import SinkHandler, SmtpSink
from tests.esp_emulator import POSTMARK_TOKEN, EspEmulator
from tests.factories import CampaignFactory, audience_with
from tests.processes import on_own_thread

Published = list[tuple[int, int, int, str]]


@pytest.fixture
def esp(settings: Settings) -> Iterator[EspEmulator]:
    """The emulated ESPs, with anymail's settings and three channels pointing at them."""
    with EspEmulator() as emulator:
        settings.ANYMAIL = emulator.anymail_settings()
        settings.OPSDASH_CHANNELS = ["relay=smtp", "pm=postmark:broadcast", "mg=mailgun"]
        settings.OPSDASH_DEFAULT_CHANNEL = "relay"
        yield emulator


def launch(campaign: Campaign) -> tuple[Send, Published]:
    published: Published = []
    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key="once",
        trigger=Send.Trigger.MANUAL,
        publish=lambda *batch: published.append(batch),
    )
    assert send is not None
    return send, published


def deliver(published: Published) -> list[Any]:
    return [
        batch_deliver(send_id=s, first_id=first, last_id=last, task_id=task_id)
        for s, first, last, task_id in published
    ]


def statuses(send: Send) -> Counter[str]:
    return Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))


# --- Configuration ---------------------------------------------------------------------------


def test_channels_parse_names_backends_and_streams() -> None:
    found = channels_parse(["relay=smtp", "pm = postmark:outbound", "ses=amazon_ses"], "pm")

    assert list(found) == ["relay", "pm", "ses"]
    assert found["pm"].backend == "postmark" and found["pm"].stream == "outbound"
    assert found["ses"].backend_path == "anymail.backends.amazon_ses.EmailBackend"
    assert found["relay"].is_smtp and not found["pm"].is_smtp


@pytest.mark.parametrize(
    ("entries", "default", "message"),
    [
        (["x=postmork"], "x", "unknown backend 'postmork'"),
        (["x=base_requests"], "x", "unknown backend"),
        (["x=smtp", "x=postmark"], "x", "names the channel 'x' twice"),
        (["x=smtp"], "y", "OPSDASH_DEFAULT_CHANNEL='y' is not one of the channels"),
        (["x=smtp:outbound"], "x", "a stream is for an ESP"),
        (["postmark"], "postmark", "must be name=backend"),
        (["Bad Name=smtp"], "Bad Name", "must be name=backend"),
        ([], "", "OPSDASH_CHANNELS is empty"),
    ],
)
def test_channels_parse_refuses_bad_values_saying_which(
    entries: list[str], default: str, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        channels_parse(entries, default)


def test_channel_for_builds_the_channel_of_each_backend(esp: EspEmulator) -> None:
    assert channel_names() == ["relay", "pm", "mg"]
    assert isinstance(channel_for(""), SmtpChannel)  # the default
    assert isinstance(channel_for("pm"), PostmarkBatchChannel)
    mailgun = channel_for("mg")
    assert isinstance(mailgun, AnymailChannel) and mailgun.max_batch == 1
    with pytest.raises(ImproperlyConfigured, match="'gone' is not configured"):
        channel_for("gone")


# --- What an ESP's answer means --------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "attempted"),
    [
        ({"ErrorCode": 0, "Message": "OK", "MessageID": "m-1"}, Outcome.SENT, True),
        ({"ErrorCode": 406, "Message": "inactive"}, Outcome.NO_MAILBOX, True),
        ({"ErrorCode": 300, "Message": "Invalid 'To' address"}, Outcome.PERMANENT, True),
        ({"ErrorCode": 429, "Message": "Rate limit exceeded"}, Outcome.TRANSIENT, False),
        ({"ErrorCode": 405, "Message": "Not allowed to send"}, Outcome.TRANSIENT, False),
    ],
)
def test_postmark_error_codes_are_classified(
    answer: dict[str, Any], outcome: Outcome, attempted: bool
) -> None:
    result = postmark_result(answer)

    assert (result.outcome, result.attempted) == (outcome, attempted)
    assert result.esp_message_id == ("m-1" if outcome is Outcome.SENT else "")


@pytest.mark.parametrize(
    ("status", "text", "outcome", "attempted"),
    [
        (429, "Too many requests", Outcome.TRANSIENT, False),
        (500, "Internal error", Outcome.TRANSIENT, False),
        (503, "Unavailable", Outcome.TRANSIENT, False),
        (None, "connection refused", Outcome.TRANSIENT, False),
        (400, "Throttling: Maximum sending rate exceeded.", Outcome.TRANSIENT, False),
        (400, "'to' parameter is not a valid address", Outcome.PERMANENT, True),
        (400, "Recipient is on the suppression list", Outcome.NO_MAILBOX, True),
    ],
)
def test_http_failures_defer_or_fail_by_what_they_say(
    status: int | None, text: str, outcome: Outcome, attempted: bool
) -> None:
    result = http_failure(status, text)

    assert (result.outcome, result.attempted) == (outcome, attempted)


REFUSED = NewConnectionError(HTTPConnection("127.0.0.1"), "Connection refused")
CUT_OFF = ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed"))


@pytest.mark.parametrize(
    ("exc", "attempted"),
    [
        (requests.ConnectionError(REFUSED), False),
        (requests.ConnectTimeout("connect timed out"), False),
        (requests.ConnectionError(CUT_OFF), True),
        (requests.ReadTimeout("read timed out"), True),
    ],
)
def test_a_request_that_may_have_left_counts_as_an_attempt(
    exc: requests.RequestException, attempted: bool
) -> None:
    result = network_failure(exc)

    assert (result.outcome, result.attempted) == (Outcome.TRANSIENT, attempted)


class _AwsError(Exception):
    """What boto3 raises for Amazon SES: the error code in ``response["Error"]["Code"]``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code, "Message": "..."}}


@pytest.mark.parametrize(
    ("code", "outcome", "attempted"),
    [
        ("Throttling", Outcome.TRANSIENT, False),
        ("ServiceUnavailable", Outcome.TRANSIENT, False),
        ("MessageRejected", Outcome.PERMANENT, True),
    ],
)
def test_amazon_ses_throttling_defers_and_a_rejection_fails(
    code: str, outcome: Outcome, attempted: bool
) -> None:
    try:
        try:
            raise _AwsError(code)
        except _AwsError as cause:
            raise AnymailAPIError("SES send failed") from cause
    except AnymailAPIError as exc:
        result = anymail_error_result(exc)

    assert (result.outcome, result.attempted) == (outcome, attempted)


@pytest.mark.django_db
def test_postmark_one_message_per_call_is_classified_from_its_answer(
    esp: EspEmulator,
) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)], channel="pm")
    send, _ = launch(campaign)
    single = AnymailChannel(ChannelConfig(name="single", backend="postmark"))
    composed = _composed(single, campaign, send)
    esp.reject(composed[1].outgoing.to_email)
    esp.fail_next(0)

    with single:
        sent, refused = single.send(composed[:2])
        esp.fail_next(1, 429)
        [throttled] = single.send(composed[2:])

    assert (sent.outcome, sent.esp_message_id) == (Outcome.SENT, esp.accepted[0].message_id)
    assert (refused.outcome, refused.code) == (Outcome.NO_MAILBOX, 422)
    assert (throttled.outcome, throttled.attempted, throttled.code) == (
        Outcome.TRANSIENT,
        False,
        429,
    )
    assert [call.path for call in esp.requests] == ["/email"] * 3


# --- Postmark's batch endpoint ---------------------------------------------------------------


def _composed(channel: Any, campaign: Campaign, send: Send) -> list[Any]:
    compiled, frame = compiled_for_send(send)
    rows = Delivery.objects.filter(send=send).select_related("recipient").order_by("id")
    return [
        channel.compose(
            Outgoing(
                delivery_id=row.pk,
                frame=frame,
                rendered=message_render(
                    compiled, recipient=recipient_fields(row.recipient), unsubscribe_url="u"
                ),
                to_email=row.recipient.email,
                to_name=row.recipient.full_name,
                message_id=row.message_id,
                unsubscribe_url=f"https://example.com/u/{row.pk}",
            )
        )
        for row in rows
    ]


@pytest.mark.django_db
def test_a_postmark_batch_maps_each_answer_back_to_its_message(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)], channel="pm")
    send, _ = launch(campaign)
    emails = list(
        Delivery.objects.filter(send=send).order_by("id").values_list("recipient__email", flat=True)
    )
    esp.reject(emails[1])

    with channel_for("pm") as channel:
        results = channel.send(_composed(channel, campaign, send))

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.NO_MAILBOX, Outcome.SENT]
    ids = {m.to: m.message_id for m in esp.accepted}
    assert [r.esp_message_id for r in results] == [ids[emails[0]], "", ids[emails[2]]]
    [call] = esp.requests
    assert call.path == "/email/batch" and call.headers["x-postmark-server-token"] == POSTMARK_TOKEN
    first = call.json()[0]
    assert first["MessageStream"] == "broadcast"
    headers = {header["Name"]: header["Value"] for header in first["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://example.com/u/")
    assert headers["X-Opsdash-Campaign"] == str(campaign.pk)
    assert headers["Message-ID"].startswith(f"<send-{send.pk}.")
    assert first["From"] == "Team <team@example.com>" and first["TextBody"].startswith("Hi ")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("Ada Lovelace", "ada@example.com"),
        ("", "plain@example.com"),
        ("Doe, John", "john@example.com"),  # quoted by anymail
        ("Åsa Öberg", "asa@example.com"),  # encoded by anymail
        ("Ann", "ann@exämple.com"),  # an IDNA domain
    ],
)
def test_each_postmark_message_is_what_anymail_builds_for_it(
    esp: EspEmulator, name: str, email: str
) -> None:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], channel="pm", reply_to="Desk <desk@example.com>"
    )
    send, _ = launch(campaign)
    channel = channel_for("pm")
    assert isinstance(channel, PostmarkBatchChannel)
    [first] = _composed(channel, campaign, send)  # anymail builds it, and the template
    outgoing = dataclasses.replace(
        first.outgoing, to_email=email, to_name=name, message_id="<m-2@example.com>"
    )

    built = channel.compose(outgoing).payload

    assert built == channel._anymail_payload(outgoing)


def test_a_batch_answer_of_another_length_is_retried_not_trusted() -> None:
    response = requests.models.Response()
    response.status_code, response._content = 200, b'[{"ErrorCode": 0, "Message": "OK"}]'

    results = batch_results(response, 2)

    assert [r.outcome for r in results] == [Outcome.TRANSIENT, Outcome.TRANSIENT]
    assert all(r.attempted for r in results)  # they may have gone: retried, not dropped


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_throttled_or_failing_postmark_call_is_not_an_attempt(
    esp: EspEmulator, status: int
) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)], channel="pm")
    send, _ = launch(campaign)
    esp.fail_next(1, status)

    with channel_for("pm") as channel:
        results = channel.send(_composed(channel, campaign, send))

    assert {(r.outcome, r.attempted, r.code) for r in results} == {
        (Outcome.TRANSIENT, False, status)
    }
    assert esp.accepted == []


@pytest.mark.django_db
def test_an_unreachable_esp_is_not_an_attempt(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], channel="pm")
    send, _ = launch(campaign)
    esp.down()

    with channel_for("pm") as channel:
        [result] = channel.send(_composed(channel, campaign, send))

    assert (result.outcome, result.attempted) == (Outcome.TRANSIENT, False)
    assert "ConnectionError" in result.text


# --- Mailgun, one message per call through anymail ------------------------------------------


@pytest.mark.django_db
def test_mailgun_sends_each_message_with_our_headers_and_keeps_its_id(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)], channel="mg")
    send, _ = launch(campaign)

    with channel_for("mg") as channel:
        results = channel.send(_composed(channel, campaign, send))

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert {r.esp_message_id for r in results} == {m.message_id for m in esp.accepted}
    assert [call.path for call in esp.requests] == ["/v3/example.com/messages"] * 2
    fields = esp.accepted[0].fields
    assert fields["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]
    assert fields["h:X-Opsdash-Campaign"] == [str(campaign.pk)]
    assert fields["subject"][0].startswith("Hello ")


@pytest.mark.django_db
def test_mailgun_refusing_a_message_fails_that_message(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(2)], channel="mg")
    send, _ = launch(campaign)
    first = Delivery.objects.filter(send=send).order_by("id").first()
    assert first is not None
    esp.reject(first.recipient.email)

    with channel_for("mg") as channel:
        results = channel.send(_composed(channel, campaign, send))

    assert [(r.outcome, r.code) for r in results] == [(Outcome.PERMANENT, 400), (Outcome.SENT, 200)]


# --- Delivery through each channel -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_on_postmark_delivers_every_row_once_and_keeps_the_esp_ids(
    esp: EspEmulator, settings: Settings
) -> None:
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 4  # groups of four messages per API call
    campaign = CampaignFactory.create(audiences=[audience_with(10)], channel="pm")
    send, published = launch(campaign)
    assert send.channel == "pm"

    deliver(published)

    send.refresh_from_db()
    assert send.status == Send.Status.COMPLETED and send.sent_count == 10
    rows = Delivery.objects.filter(send=send)
    assert esp.received() == Counter(
        {email: 1 for email in rows.values_list("recipient__email", flat=True)}
    )
    by_id = {m.to: m.message_id for m in esp.accepted}
    assert {row.recipient.email: row.esp_message_id for row in rows} == by_id
    assert [len(call.json()) for call in esp.requests] == [4, 4, 2]


@pytest.mark.django_db(transaction=True)
def test_a_rate_limited_postmark_send_calls_with_no_more_than_the_bucket_holds(
    esp: EspEmulator, settings: Settings
) -> None:
    settings.OPSDASH_RATE_FALLBACK_SHARE = 1
    # 600 a minute: ten a second, a bucket of ten; a group of 50 would never get its tokens.
    campaign = CampaignFactory.create(
        audiences=[audience_with(25)], channel="pm", rate_limit_per_minute=600
    )
    send, published = launch(campaign)

    deliver(published)

    assert statuses(send) == {"sent": 25}
    assert [len(call.json()) for call in esp.requests] == [10, 10, 5]


@pytest.mark.django_db(transaction=True)
def test_an_inactive_recipient_at_postmark_fails_and_is_suppressed(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)], channel="pm")
    send, published = launch(campaign)
    refused = Delivery.objects.filter(send=send).order_by("id").first()
    assert refused is not None
    esp.reject(refused.recipient.email)

    deliver(published)

    assert statuses(send) == {"sent": 2, "failed": 1}
    refused.refresh_from_db()
    assert refused.status == Delivery.Status.FAILED and "406" in refused.last_error
    assert refused.recipient.status == Recipient.Status.BOUNCED


@pytest.mark.django_db(transaction=True)
def test_a_throttled_postmark_defers_the_rows_without_an_attempt(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(3)], channel="pm")
    send, published = launch(campaign)
    esp.fail_next(1, 429)

    [result] = deliver(published)

    assert result.next_step is NextStep.BACKOFF and result.requeued == 3
    assert set(Delivery.objects.filter(send=send).values_list("status", "attempts")) == {
        ("queued", 0)
    }
    assert "429" in result.deferred

    deliver(published)  # the retry

    assert statuses(send) == {"sent": 3}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_a_pause_or_cancel_stops_an_esp_send_before_its_next_api_call(
    esp: EspEmulator, settings: Settings, action: str
) -> None:
    settings.OPSDASH_DELIVERY_FLUSH_EVERY = 4
    campaign = CampaignFactory.create(audiences=[audience_with(12)], channel="pm")
    send, published = launch(campaign)
    stop = send_pause if action == "pause" else send_cancel

    def after_call(number: int) -> None:
        if number == 1:  # the first call is answered: staff press Pause (or Cancel)
            on_own_thread(lambda: stop(send_id=send.pk, by=None))

    esp.after_call = after_call

    [result] = deliver(published)

    assert result.next_step is NextStep.STOPPED
    assert len(esp.requests) == 1 and esp.received().total() == 4
    rest = "queued" if action == "pause" else "skipped"
    assert statuses(send) == {"sent": 4, rest: 8}


@pytest.mark.django_db(transaction=True)
def test_the_journal_keeps_the_esp_id_of_a_message_not_yet_written(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], channel="pm")
    send, _ = launch(campaign)
    row = Delivery.objects.get(send=send)
    Delivery.objects.filter(pk=row.pk).update(status=Delivery.Status.SENDING, task_id="t-journal")
    accepted = ChannelResult(Outcome.SENT, 0, "OK", esp_message_id="pm-123")
    with ControlProbe(send.pk, "t-journal") as probe:  # a worker killed after the answer
        probe.ask()
        probe.note(row.pk, journal_entry(accepted))
        probe.answer()

    assert journal_apply(task_id="t-journal", send_id=send.pk) == 1

    row.refresh_from_db()
    assert (row.status, row.esp_message_id, row.smtp_response) == ("sent", "pm-123", "0 OK")


@pytest.mark.django_db(transaction=True)
def test_a_launch_of_a_campaign_whose_channel_is_gone_fails_saying_why(
    esp: EspEmulator,
) -> None:
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], channel="gone", status=Campaign.Status.SENDING
    )

    send = send_launch(campaign_id=campaign.pk, occurrence_key="once", trigger="manual")

    assert send is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.FAILED
    refused = AuditEntry.objects.get(campaign=campaign, action=AuditEntry.Action.SEND_REFUSED)
    assert "'gone' is not configured" in refused.changes["reason"]


@pytest.mark.django_db(transaction=True)
def test_a_launch_on_an_esp_without_its_api_key_fails_saying_why(
    esp: EspEmulator, settings: Settings
) -> None:
    settings.ANYMAIL = {}
    campaign = CampaignFactory.create(
        audiences=[audience_with(1)], channel="pm", status=Campaign.Status.SENDING
    )

    assert send_launch(campaign_id=campaign.pk, occurrence_key="once", trigger="manual") is None

    refused = AuditEntry.objects.get(campaign=campaign, action=AuditEntry.Action.SEND_REFUSED)
    assert "POSTMARK_SERVER_TOKEN" in refused.changes["reason"]


class _EnvelopeHandler(SinkHandler):
    """The sink, also keeping each message's envelope sender."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.senders.append(envelope.mail_from)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.django_db(transaction=True)
def test_the_smtp_channel_sends_each_message_from_its_verp_address(
    esp: EspEmulator, settings: Settings
) -> None:
    handler = _EnvelopeHandler()
    sink = SmtpSink()
    sink.handler = handler
    with sink:
        settings.EMAIL_PORT = sink.port
        settings.OPSDASH_BOUNCE_DOMAIN = "bounces.example.com"
        campaign = CampaignFactory.create(audiences=[audience_with(3)])
        send, published = launch(campaign)
        assert send.channel == "relay"

        deliver(published)

    ids = set(Delivery.objects.filter(send=send).values_list("id", flat=True))
    assert {verp_delivery_id(sender) for sender in handler.senders} == ids
    assert all(s.endswith("@bounces.example.com") for s in handler.senders)
    assert statuses(send) == {"sent": 3}


@pytest.mark.django_db
def test_a_test_message_goes_through_the_campaigns_own_channel(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], channel="pm")

    reply = testmail.test_message_send(campaign_id=campaign.pk, to_email="dana@example.com")

    [accepted] = esp.accepted
    assert accepted.esp == "postmark"
    assert accepted.to == "dana@example.com"
    assert accepted.fields["Subject"].startswith("[TEST] ")
    assert accepted.message_id in reply


@pytest.mark.django_db
def test_a_test_message_the_esp_refuses_says_which_esp_and_why(esp: EspEmulator) -> None:
    campaign = CampaignFactory.create(audiences=[audience_with(1)], channel="pm")
    esp.reject("dana@example.com")

    with pytest.raises(testmail.TestMessageFailed, match=r"The pm ESP answered .*406"):
        testmail.test_message_send(campaign_id=campaign.pk, to_email="dana@example.com")
