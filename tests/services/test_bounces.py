"""Bounce mail: what the parser reads from each sender's shape, and what the receiver stores."""

from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.models import BounceMessage, DeliveryEvent
from campaigns.services.bounces import (
    Outcome,
    PlayKind,
    Returned,
    bounce_compose,
    bounce_message_receive,
    bounce_parse,
)
from campaigns.services.bounces.receive import RAW_LIMIT
from tests.bounce_samples import SAMPLE_MESSAGE_ID, delivery_create, sample

Kind = DeliveryEvent.Kind
ORIGINAL_ID = SAMPLE_MESSAGE_ID.decode()


@pytest.fixture(autouse=True)
def _bounce_domain(settings: Settings) -> None:
    settings.OPSDASH_BOUNCE_DOMAIN = "bounces.opsdash.test"
    settings.OPSDASH_MESSAGE_ID_DOMAIN = "opsdash.localhost"


# --- the parser, sample by sample ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "email", "status", "diagnostic"),
    [
        ("postfix-hard.eml", Kind.BOUNCED, "ada@example.com", "5.1.1", "User unknown in virtual"),
        ("postfix-delayed.eml", Kind.DEFERRED, "ada@example.com", "4.4.1", "Connection timed out"),
        ("office365-ndr.eml", Kind.BOUNCED, "ada@contoso.com", "5.1.10", "RecipientNotFound"),
        ("gmail-failure.eml", Kind.BOUNCED, "ada@example.com", "5.1.1", "does not exist"),
    ],
)
def test_it_reads_each_recipient_of_a_dsn(
    name: str, kind: str, email: str, status: str, diagnostic: str
) -> None:
    parsed = bounce_parse(sample(name))
    assert parsed.outcome is Outcome.EVENTS
    [finding] = parsed.findings
    assert (finding.kind, finding.email, finding.status) == (kind, email, status)
    assert diagnostic in finding.diagnostic
    assert parsed.original_message_id == ORIGINAL_ID


@pytest.mark.parametrize(
    ("name", "email"),
    [("exchange-legacy.eml", "ada@example.com"), ("qmail.eml", "ada@example.net")],
)
def test_it_reads_the_older_free_text_bounces(name: str, email: str) -> None:
    parsed = bounce_parse(sample(name))
    assert parsed.outcome is Outcome.EVENTS
    assert [(f.kind, f.email) for f in parsed.findings] == [(Kind.BOUNCED, email)]
    assert parsed.original_message_id == ORIGINAL_ID


@pytest.mark.parametrize(
    ("name", "email"),
    [("yahoo-arf.eml", "ada@example.com"), ("microsoft-jmrp.eml", "ada@outlook.example")],
)
def test_a_feedback_report_is_a_complaint(name: str, email: str) -> None:
    parsed = bounce_parse(sample(name))
    assert [(f.kind, f.email, f.status) for f in parsed.findings] == [
        (Kind.COMPLAINED, email, "abuse")
    ]
    assert parsed.original_message_id == ORIGINAL_ID


def test_an_out_of_office_reply_reports_nothing() -> None:
    parsed = bounce_parse(sample("out-of-office.eml"))
    assert (parsed.outcome, parsed.findings) == (Outcome.AUTO_REPLY, ())


def test_a_message_no_parser_understands_is_unknown_with_the_reason() -> None:
    parsed = bounce_parse(sample("unparseable.eml"))
    assert parsed.outcome is Outcome.UNKNOWN
    assert "No bounce format recognised" in parsed.problem


def test_a_failure_with_a_4xx_status_is_a_soft_bounce() -> None:
    returned = Returned("ada@example.com", "bounces+1@bounces.opsdash.test", "To: ada@example.com")
    parsed = bounce_parse(bounce_compose(kind=PlayKind.SOFT, returned=returned))
    assert [(f.kind, f.status) for f in parsed.findings] == [(Kind.SOFT_BOUNCED, "4.2.2")]


def test_a_not_spam_report_is_understood_and_records_nothing() -> None:
    raw = sample("yahoo-arf.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    parsed = bounce_parse(raw)
    assert (parsed.outcome, parsed.findings) == (Outcome.EVENTS, ())


# --- the receiver's store --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("postfix-hard.eml", Kind.BOUNCED),
        ("postfix-delayed.eml", Kind.DEFERRED),
        ("office365-ndr.eml", Kind.BOUNCED),
        ("gmail-failure.eml", Kind.BOUNCED),
        ("exchange-legacy.eml", Kind.BOUNCED),
        ("qmail.eml", Kind.BOUNCED),
        ("yahoo-arf.eml", Kind.COMPLAINED),
        ("microsoft-jmrp.eml", Kind.COMPLAINED),
    ],
)
def test_each_sample_is_stored_as_an_event_for_its_delivery(name: str, kind: str) -> None:
    delivery = delivery_create()
    bounce = bounce_message_receive(raw=sample(name, delivery=delivery), mail_from="")
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id, event.source) == (kind, delivery.pk, "bounce_mail")
    assert event.message_id == delivery.message_id
    assert event.payload["bounce_message_id"] == bounce.pk
    assert (bounce.status, bounce.events_found) == (BounceMessage.Status.PARSED, 1)
    assert bytes(bounce.raw) == sample(name, delivery=delivery)


@pytest.mark.django_db
def test_the_envelope_recipient_names_the_delivery_first() -> None:
    delivery, other = delivery_create(), delivery_create("bob@example.com")
    raw = sample("postfix-hard.eml", delivery=other)
    verp = raw.split(b"X-Postfix-Sender: rfc822; ")[1].split(b"\n")[0].decode()
    bounce_message_receive(raw=sample("postfix-hard.eml", delivery=delivery), rcpt_tos=[verp])
    assert DeliveryEvent.objects.get().delivery_id == other.pk


@pytest.mark.django_db
def test_without_a_verp_address_the_returned_message_id_names_the_delivery() -> None:
    delivery = delivery_create()
    bounce_message_receive(raw=sample("office365-ndr.eml", delivery=delivery, verp=False))
    event = DeliveryEvent.objects.get()
    assert (event.delivery_id, event.email) == (delivery.pk, "ada@contoso.com")


@pytest.mark.django_db
def test_a_forged_verp_address_and_a_foreign_message_id_leave_only_the_address() -> None:
    raw = sample("postfix-hard.eml").replace(b"opsdash.localhost", b"elsewhere.example")
    bounce_message_receive(raw=raw, rcpt_tos=["bounces+1234-aaaaaaaaaaaaaaaa@bounces.opsdash.test"])
    event = DeliveryEvent.objects.get()
    assert (event.delivery_id, event.email) == (None, "ada@example.com")


@pytest.mark.django_db
def test_a_bounce_delivered_twice_stores_its_event_once() -> None:
    raw = sample("postfix-hard.eml", delivery=delivery_create())
    bounce_message_receive(raw=raw)
    bounce_message_receive(raw=raw)
    assert DeliveryEvent.objects.count() == 1
    assert BounceMessage.objects.count() == 2


@pytest.mark.django_db
def test_an_auto_reply_is_kept_as_understood_with_no_events() -> None:
    bounce = bounce_message_receive(raw=sample("out-of-office.eml"))
    assert (bounce.status, bounce.events_found, bounce.problem) == ("parsed", 0, "")
    assert not DeliveryEvent.objects.exists()


@pytest.mark.django_db
def test_an_unknown_message_is_kept_whole_for_a_person() -> None:
    raw = sample("unparseable.eml")
    bounce = bounce_message_receive(raw=raw, mail_from="bob@example.org", rcpt_tos=["x@y.test"])
    bounce.refresh_from_db()
    assert bounce.status == BounceMessage.Status.NEEDS_REVIEW
    assert (bytes(bounce.raw), bounce.subject) == (raw, "Re: November newsletter")
    assert (bounce.mail_from, bounce.rcpt_to) == ("bob@example.org", "x@y.test")
    assert "No bounce format recognised" in bounce.problem
    assert not DeliveryEvent.objects.exists()


@pytest.mark.django_db
def test_a_huge_message_is_kept_truncated_and_says_so() -> None:
    raw = sample("unparseable.eml") + b"x" * (RAW_LIMIT + 10) + b"\n"
    bounce = bounce_message_receive(raw=raw)
    bounce.refresh_from_db()
    assert len(bytes(bounce.raw)) == RAW_LIMIT
    assert f"Kept the first {RAW_LIMIT} of {len(raw)} bytes." in bounce.problem


@pytest.mark.django_db
def test_nul_characters_a_database_refuses_are_dropped_not_fatal() -> None:
    raw = sample("postfix-hard.eml", delivery=delivery_create())
    raw = raw.replace(b"Subject: Undelivered", b"Subject: Und\x00elivered")
    raw = raw.replace(b"User unknown in virtual", b"User unknown\x00 in virtual")
    bounce = bounce_message_receive(raw=raw, mail_from="a\x00@b.test")
    bounce.refresh_from_db()
    assert (bounce.subject, bounce.mail_from) == ("Undelivered Mail Returned to Sender", "a@b.test")
    assert "User unknown in virtual" in DeliveryEvent.objects.get().mta_response
