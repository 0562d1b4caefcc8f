"""The demo mailbox holds everyone's mail: superusers read it, every other account gets 403."""

from __future__ import annotations

import mailbox
import os
import re
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


def fill(folder: Path, count: int, *, to: str = "bob@example.com") -> list[str]:
    """``count`` messages written a second apart (as mtimes), oldest first; their keys."""
    box = mailbox.Maildir(folder, create=True)
    keys = []
    for n in range(count):
        message = EmailMessage()
        message["Subject"], message["To"], message["From"] = f"Message {n:03}", to, "t@x.org"
        message.set_content("hello")
        key = box.add(message)
        path = folder / "new" / key
        os.utime(path, ns=(1_700_000_000_000_000_000 + n * 10**9,) * 2)
        keys.append(key)
    return keys


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    return client


def subjects(page: str) -> list[str]:
    return re.findall(r"Message \d{3}", page.split('id="mailbox"')[1])


def test_the_mailbox_lists_newest_first_by_time_written_a_page_at_a_time(
    settings: Settings, tmp_path: Path, superuser: Client
) -> None:
    settings.OPSDASH_MAILBOX_DIR = str(tmp_path / "mail")
    fill(tmp_path / "mail", 120)
    first = superuser.get(reverse("mailbox")).content.decode()
    assert subjects(first)[:3] == ["Message 119", "Message 118", "Message 117"]
    assert len(subjects(first)) == 50 and "Page 1 of 3" in first
    assert 'href="?page=2"' in first
    last = superuser.get(reverse("mailbox"), {"page": 3}).content.decode()
    assert subjects(last)[-1] == "Message 000" and len(subjects(last)) == 20


def test_the_mailbox_finds_the_messages_to_one_address_in_any_case(
    settings: Settings, tmp_path: Path, superuser: Client
) -> None:
    settings.OPSDASH_MAILBOX_DIR = str(tmp_path / "mail")
    fill(tmp_path / "mail", 5)
    fill(tmp_path / "mail", 2, to="Ada Lovelace <ada@example.com>")
    page = superuser.get(reverse("mailbox"), {"to": " ADA@example.com "}).content.decode()
    assert len(subjects(page)) == 2 and "2 to ada@example.com" in page
    assert "bob@example.com" not in page.split('id="mailbox"')[1]
    none = superuser.get(reverse("mailbox"), {"to": "ada@example"}).content.decode()
    assert subjects(none) == [] and "No message to ada@example" in none
