"""Playing a bounce from the demo mailbox, and with ``manage.py play_bounce``."""

from __future__ import annotations

import mailbox
import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from campaigns.models import BounceMessage, Delivery, DeliveryEvent
from campaigns.services.verp import verp_envelope_from
from opsdash.smtp_sink import SmtpSink
from tests.admin.helpers import user_with_roles
from tests.bounce_samples import BOUNCE_DOMAIN, delivery_create, receiver_process
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

RECEIVER_PORT, CLOSED_PORT = 18310, 18311


@pytest.fixture(autouse=True)
def _bounce_settings(settings: Settings, tmp_path: Path) -> None:
    settings.OPSDASH_BOUNCE_DOMAIN = BOUNCE_DOMAIN
    settings.OPSDASH_BOUNCE_HOST = "127.0.0.1"
    settings.OPSDASH_BOUNCE_PORT = CLOSED_PORT
    settings.OPSDASH_BOUNCE_PROTOCOL = "smtp"
    settings.OPSDASH_MAILBOX_DIR = str(tmp_path / "mail")


@pytest.fixture
def receiver(settings: Settings) -> Iterator[None]:
    """The real receiver process: it shares the test database, so PostgreSQL only."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the receiver process needs the services profile's PostgreSQL")
    settings.OPSDASH_BOUNCE_PORT = RECEIVER_PORT
    with receiver_process(port=RECEIVER_PORT):
        yield


@pytest.fixture
def superuser() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    return client


def caught(delivery: Delivery, tmp_path: Path) -> str:
    """The delivery's message, sent from its VERP address through the real catcher; its key."""
    message = EmailMessage()
    message["From"], message["To"] = "news@opsdash.test", delivery.recipient.email
    message["Subject"], message["Message-ID"] = "November newsletter", delivery.message_id
    message.set_content("Hello")
    envelope_from = verp_envelope_from(delivery_id=delivery.pk)
    with (
        SmtpSink(maildir=tmp_path / "mail") as sink,
        smtplib.SMTP("127.0.0.1", sink.port) as smtp,
    ):
        smtp.send_message(message, from_addr=envelope_from, to_addrs=[delivery.recipient.email])
    [key] = mailbox.Maildir(tmp_path / "mail").keys()
    return key


def play(client: Client, key: str, kind: str) -> str:
    url = reverse("mailbox-message", args=[key])
    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None, "no Play a bounce form on the page"
    response = client.post(url, {"kind": kind, "csrfmiddlewaretoken": token.group(1)}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_the_catcher_files_a_message_under_its_envelope_sender(tmp_path: Path) -> None:
    delivery = delivery_create()
    key = caught(delivery, tmp_path)
    stored = mailbox.Maildir(tmp_path / "mail").get_bytes(key)
    assert stored.startswith(
        f"Return-Path: <{verp_envelope_from(delivery_id=delivery.pk)}>".encode()
    )


@pytest.mark.parametrize(
    ("kind", "event_kind"),
    [
        ("hard", DeliveryEvent.Kind.BOUNCED),
        ("soft", DeliveryEvent.Kind.SOFT_BOUNCED),
        ("complaint", DeliveryEvent.Kind.COMPLAINED),
    ],
)
def test_a_superuser_plays_a_bounce_through_the_receiver(
    receiver: None, superuser: Client, tmp_path: Path, kind: str, event_kind: str
) -> None:
    delivery = delivery_create()
    page = play(superuser, caught(delivery, tmp_path), kind)
    assert "Sent to the bounce receiver" in page
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id, event.email) == (
        event_kind,
        delivery.pk,
        "ada@example.com",
    )
    bounce = BounceMessage.objects.get()
    assert bounce.rcpt_to == verp_envelope_from(delivery_id=delivery.pk)


def test_without_a_running_receiver_the_bounce_is_stored_directly_and_says_so(
    superuser: Client, tmp_path: Path
) -> None:
    delivery = delivery_create()
    page = play(superuser, caught(delivery, tmp_path), "hard")
    assert f"127.0.0.1:{CLOSED_PORT}) did not take it" in page
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id) == (DeliveryEvent.Kind.BOUNCED, delivery.pk)


def test_only_a_campaigns_message_offers_a_bounce(superuser: Client, tmp_path: Path) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "t@x.org", "ada@example.com", "Hi"
    message["Message-ID"] = "<unrelated@example.org>"
    message.set_content("hello")
    key = mailbox.Maildir(tmp_path / "mail", create=True).add(message)
    url = reverse("mailbox-message", args=[key])
    assert 'id="play-bounce"' not in superuser.get(url).content.decode()
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    assert client.post(url, {"kind": "hard"}).status_code == 404
    assert not BounceMessage.objects.exists()


def test_staff_who_cannot_read_the_mailbox_cannot_play_a_bounce(tmp_path: Path) -> None:
    key = caught(delivery_create(), tmp_path)
    client = Client()
    client.force_login(user_with_roles("editor", "approver"))
    url = reverse("mailbox-message", args=[key])
    assert client.post(url, {"kind": "hard"}).status_code == 403
    assert not BounceMessage.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(superuser: Client, tmp_path: Path) -> None:
    key = caught(delivery_create(), tmp_path)
    response = superuser.post(reverse("mailbox-message", args=[key]), {"kind": "hard"})
    assert response.status_code == 403
    assert not BounceMessage.objects.exists()


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    key = caught(delivery_create(), tmp_path)
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    response = client.post(reverse("mailbox-message", args=[key]), {"kind": "teapot"})
    assert response.status_code == 400


# --- manage.py play_bounce -------------------------------------------------------------------


def test_the_command_plays_a_complaint_through_the_receiver(
    receiver: None, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery = delivery_create()
    call_command("play_bounce", str(delivery.pk), "--kind", "complaint")
    assert "Sent to the bounce receiver" in capsys.readouterr().out
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id) == (DeliveryEvent.Kind.COMPLAINED, delivery.pk)


def test_the_command_stores_directly_when_the_receiver_is_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    delivery = delivery_create()
    call_command("play_bounce", str(delivery.pk), "--kind", "soft")
    assert "stored directly" in capsys.readouterr().out
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id) == (DeliveryEvent.Kind.SOFT_BOUNCED, delivery.pk)
    assert event.message_id == delivery.message_id


def test_the_command_without_a_bounce_domain_still_records_the_bounce(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.OPSDASH_BOUNCE_DOMAIN = ""
    delivery = delivery_create()
    call_command("play_bounce", str(delivery.pk))
    assert "No bounce domain is set" in capsys.readouterr().out
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.delivery_id) == (DeliveryEvent.Kind.BOUNCED, delivery.pk)


def test_the_command_names_a_missing_delivery() -> None:
    with pytest.raises(CommandError, match="No delivery 999999"):
        call_command("play_bounce", "999999")
