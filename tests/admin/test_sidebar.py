"""The sidebar shows each role the pages it may open."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.admin.helpers import user_with_roles

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "shown"), [("editor", True), ("approver", False), ("auditor", False)]
)
def test_seed_lists_are_in_the_sidebar_of_those_who_send_tests(role: str, shown: bool) -> None:
    client = Client()
    client.force_login(user_with_roles(role, is_staff=True))

    html = client.get(reverse("admin:index")).content.decode()

    link = f'href="{reverse("admin:campaigns_seedlist_changelist")}"'
    # The sidebar entry carries its icon; the index lists no seed-list link of its own.
    assert (link in html and "forward_to_inbox" in html) == shown
