"""The demo mailbox holds everyone's mail: superusers read it, every other account gets 403."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from tests.admin.helpers import user_with_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def message_key(settings: Settings, tmp_path: Path) -> str:
    settings.OPSDASH_MAILBOX_DIR = str(tmp_path / "mail")
    message = EmailMessage()
    message["Subject"], message["To"], message["From"] = "Hi Ada", "ada@example.com", "t@x.org"
    message.set_content("Your personal offer")
    return str(mailbox.Maildir(tmp_path / "mail", create=True).add(message))


@pytest.mark.parametrize(
    "roles", [("editor",), ("approver",), ("auditor",), ("editor", "approver")]
)
def test_staff_without_superuser_status_get_403(roles: tuple[str, ...], message_key: str) -> None:
    client = Client()
    client.force_login(user_with_roles(*roles))
    assert client.get(reverse("mailbox")).status_code == 403
    assert client.get(reverse("mailbox-message", args=[message_key])).status_code == 403
    assert reverse("mailbox") not in client.get(reverse("admin:index")).content.decode()


def test_a_superuser_reads_the_mailbox(message_key: str) -> None:
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    assert "Hi Ada" in client.get(reverse("mailbox")).content.decode()
    page = client.get(reverse("mailbox-message", args=[message_key])).content.decode()
    assert "Your personal offer" in page
    assert reverse("mailbox") in client.get(reverse("admin:index")).content.decode()
