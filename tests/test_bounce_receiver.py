"""The real ``manage.py bounces`` listener, spoken to over SMTP and LMTP as an MTA would."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest
from pytest_django import Settings

from campaigns.models import BounceMessage, DeliveryEvent
from campaigns.services.verp import verp_envelope_from
from tests.bounce_samples import BOUNCE_DOMAIN, crlf, delivery_create, receiver_process, sample

# The receiver runs as its own process on the test database: PostgreSQL, not in-memory SQLite.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SMTP_PORT, LMTP_PORT, BROKEN_PORT = 18301, 18302, 18303


@pytest.fixture(autouse=True)
def _bounce_domain(settings: Settings) -> None:
    settings.OPSDASH_BOUNCE_DOMAIN = BOUNCE_DOMAIN


@pytest.fixture(params=["smtp", "lmtp"])
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    protocol: str = request.param
    port = SMTP_PORT if protocol == "smtp" else LMTP_PORT
    with receiver_process(port=port, protocol=protocol):
        yield protocol, port


def client(protocol: str, port: int) -> smtplib.SMTP:
    return (smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP)("127.0.0.1", port, timeout=30)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("postfix-hard.eml", DeliveryEvent.Kind.BOUNCED),
        ("gmail-failure.eml", DeliveryEvent.Kind.BOUNCED),
        ("postfix-delayed.eml", DeliveryEvent.Kind.DEFERRED),
        ("yahoo-arf.eml", DeliveryEvent.Kind.COMPLAINED),
    ],
)
def test_a_bounce_is_stored_before_the_receiver_answers(
    receiver: tuple[str, int], name: str, kind: str
) -> None:
    delivery = delivery_create()
    verp = verp_envelope_from(delivery_id=delivery.pk)
    assert verp is not None
    with client(*receiver) as smtp:
        refused = smtp.sendmail("<>", [verp], crlf(sample(name, delivery=delivery)))
    assert refused == {}
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id, event.source) == (kind, delivery.pk, "bounce_mail")
    bounce = BounceMessage.objects.get()
    assert (bounce.status, bounce.events_found, bounce.rcpt_to) == ("parsed", 1, verp)


def test_an_unparseable_message_is_kept_for_review(receiver: tuple[str, int]) -> None:
    with client(*receiver) as smtp:
        smtp.sendmail(
            "bob@example.org", [f"bounces@{BOUNCE_DOMAIN}"], crlf(sample("unparseable.eml"))
        )
    bounce = BounceMessage.objects.get()
    assert (bounce.status, bounce.mail_from) == ("needs_review", "bob@example.org")
    assert bytes(bounce.raw) == crlf(sample("unparseable.eml"))
    assert not DeliveryEvent.objects.exists()


def test_an_out_of_office_reply_is_accepted_and_records_nothing(receiver: tuple[str, int]) -> None:
    with client(*receiver) as smtp:
        smtp.sendmail(
            "ada@example.com", [f"bounces@{BOUNCE_DOMAIN}"], crlf(sample("out-of-office.eml"))
        )
    assert BounceMessage.objects.get().status == "parsed"
    assert not DeliveryEvent.objects.exists()


def test_recipients_outside_the_bounce_domain_are_refused(receiver: tuple[str, int]) -> None:
    with client(*receiver) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("<>", ["someone@example.com"], crlf(sample("postfix-hard.eml")))
    assert refused.value.recipients["someone@example.com"][0] == 550
    assert not BounceMessage.objects.exists()


def test_lmtp_answers_the_data_once_per_recipient() -> None:
    """RFC 2033: one reply per accepted recipient after the data, as Postfix's lmtp client reads."""
    first, second = f"a@{BOUNCE_DOMAIN}", f"b@{BOUNCE_DOMAIN}"
    with receiver_process(port=LMTP_PORT, protocol="lmtp"):
        replies = lmtp_conversation(LMTP_PORT, [first, second], crlf(sample("postfix-hard.eml")))
    assert [line[:3] for line in replies] == ["250", "250"]
    assert BounceMessage.objects.get().rcpt_to == f"{first}, {second}"
    assert DeliveryEvent.objects.count() == 1


def lmtp_conversation(port: int, rcpts: list[str], raw: bytes) -> list[str]:
    """Speaks LMTP by hand (smtplib reads one reply to DATA); the replies after the data."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            line = reader.readline().decode()
            while line[3:4] == "-":
                line = reader.readline().decode()
            return line

        reply()
        for command in ["LHLO test", "MAIL FROM:<>", *[f"RCPT TO:<{r}>" for r in rcpts], "DATA"]:
            sock.sendall(command.encode() + b"\r\n")
            assert reply()[:1] in {"2", "3"}, command
        sock.sendall(raw.rstrip(b"\r\n") + b"\r\n.\r\n")
        replies = [reply() for _ in rcpts]
        sock.sendall(b"QUIT\r\n")
        return replies


def test_a_storage_failure_answers_451_so_the_mta_tries_again() -> None:
    broken = receiver_process(
        port=BROKEN_PORT, DATABASE_URL="postgres://nobody:wrong@127.0.0.1:1/none"
    )
    raw = crlf(sample("postfix-hard.eml"))
    with (
        broken,
        smtplib.SMTP("127.0.0.1", BROKEN_PORT, timeout=30) as smtp,
        pytest.raises(smtplib.SMTPDataError) as failed,
    ):
        smtp.sendmail("<>", [f"bounces@{BOUNCE_DOMAIN}"], raw)
    assert failed.value.smtp_code == 451
    assert "could not store a bounce message" in broken.log()


def test_the_receiver_refuses_to_start_without_a_bounce_domain() -> None:
    process = receiver_process(port=BROKEN_PORT, OPSDASH_BOUNCE_DOMAIN="")
    with pytest.raises(RuntimeError, match="Set OPSDASH_BOUNCE_DOMAIN"):
        process.start()
