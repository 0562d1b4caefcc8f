"""Login brute-force protection: repeated wrong passwords lock the login, even against the
right password, and only superusers see the lockouts in the admin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from tests.admin.helpers import ROLES, user_with_roles
from tests.factories import UserFactory

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"  # UserFactory's


def log_in(client: Client, username: str, password: str) -> _MonkeyPatchedWSGIResponse:
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": reverse("admin:index")},
    )


def test_ten_wrong_passwords_lock_the_login_even_against_the_right_one() -> None:
    UserFactory.create(username="dana", is_superuser=True)
    client = Client()
    for _ in range(10):
        log_in(client, "dana", "guess")
    response = log_in(client, "dana", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302  # still sent to the login page


def test_a_success_before_the_limit_resets_the_count() -> None:
    UserFactory.create(username="sam")
    client = Client()
    for _ in range(3):
        log_in(client, "sam", "guess")
    assert log_in(client, "sam", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(username="sam").exists()


def test_superusers_see_the_lockouts_and_other_staff_do_not() -> None:
    UserFactory.create(username="dana")
    for _ in range(10):
        log_in(Client(), "dana", "guess")
    changelist = reverse("admin:axes_accessattempt_changelist")
    failures = reverse("admin:axes_accessfailurelog_changelist")

    superuser = Client()
    superuser.force_login(UserFactory.create(is_superuser=True))
    page = superuser.get(changelist)
    assert page.status_code == 200
    assert "dana" in page.content.decode()
    assert superuser.get(failures).status_code == 200
    assert "Login lockouts" in superuser.get(reverse("admin:index")).content.decode()

    # Every role, and even the models' own permissions, are not enough.
    staff = user_with_roles(*ROLES)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="axes"))
    other = Client()
    other.force_login(staff)
    assert other.get(changelist).status_code == 403
    assert other.get(failures).status_code == 403
    assert "Login lockouts" not in other.get(reverse("admin:index")).content.decode()


def test_a_superuser_lifts_a_lock_by_deleting_the_attempt() -> None:
    UserFactory.create(username="dana")
    for _ in range(10):
        log_in(Client(), "dana", "guess")
    attempt = AccessAttempt.objects.get(username="dana")
    superuser = Client()
    superuser.force_login(UserFactory.create(is_superuser=True))
    delete = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
    assert superuser.post(delete, {"post": "yes"}).status_code == 302
    assert log_in(Client(), "dana", PASSWORD).status_code == 302
