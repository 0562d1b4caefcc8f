"""An import never brings an address on the suppression list in as active."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django import Settings

from campaigns.models import ImportJob, Recipient, Subscription, Suppression
from campaigns.services.suppressions import SuppressionIn, suppressions_add
from tests.factories import AudienceFactory
from tests.services.test_imports import run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def test_a_new_address_on_the_suppression_list_arrives_suppressed() -> None:
    suppressions_add(
        entries=[
            SuppressionIn(email="grace@example.com", reason=Suppression.Reason.COMPLAINT),
            SuppressionIn(email="ada@example.com", reason=Suppression.Reason.HARD_BOUNCE),
        ]
    )
    audience = AudienceFactory.create()
    job = run("valid.csv", audience=audience)
    assert job.status == ImportJob.Status.COMPLETED, job.message
    statuses = dict(Recipient.objects.values_list("email", "status"))
    assert statuses["grace@example.com"] == Recipient.Status.COMPLAINED
    assert statuses["ada@example.com"] == Recipient.Status.BOUNCED
    assert statuses["=cmd@example.com"] == Recipient.Status.ACTIVE
    subscribed = Subscription.objects.filter(audience=audience).values_list(
        "recipient__email", flat=True
    )
    assert "grace@example.com" not in set(subscribed)
    row = Suppression.objects.get(email="grace@example.com")
    assert row.recipient_id == Recipient.objects.get(email="grace@example.com").pk
