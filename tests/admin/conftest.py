"""Fixtures shared by the admin tests."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.admin.helpers import user_with_roles


@pytest.fixture
def auditor() -> Client:
    """A logged-in client with the read-only auditor role."""
    client = Client()
    client.force_login(user_with_roles("auditor"))
    return client
