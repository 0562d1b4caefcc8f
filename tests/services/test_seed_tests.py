"""Test messages as a chosen recipient reads them, and seed lists of addresses."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_celery_results.models import TaskResult

from campaigns.models import TaskLink
from campaigns.selectors.campaigns import task_state
from campaigns.services.delivery import testmail
from campaigns.services.seeds import seed_addresses_parse
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def test_a_test_can_be_personalised_as_a_chosen_recipient(smtp_sink: SmtpSink) -> None:
    campaign = CampaignFactory.create(subject="Hello {{ recipient.first_name }}")
    ada = RecipientFactory.create(email="ada@example.com", first_name="Ada")
    testmail.test_message_send(
        campaign_id=campaign.pk, to_email="qa@example.com", recipient_id=ada.pk
    )
    testmail.test_message_send(campaign_id=campaign.pk, to_email="qa@example.com")
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert subjects == ["[TEST] Hello Ada", "[TEST] Hello Sample"]
    assert {m["To"].addresses[0].addr_spec for m in smtp_sink.messages} == {"qa@example.com"}


def test_a_seed_list_keeps_one_address_per_line_without_repeats() -> None:
    assert seed_addresses_parse(" a@example.com\n\nb@example.com\na@example.com\n") == [
        "a@example.com",
        "b@example.com",
    ]
    with pytest.raises(ValidationError, match="Line 2"):
        seed_addresses_parse("a@example.com\nnot an address")
    with pytest.raises(ValidationError, match="at least one address"):
        seed_addresses_parse("\n  \n")


@pytest.mark.parametrize(
    ("status", "result", "label", "detail"),
    [
        (
            "SUCCESS",
            '{"to": "qa@example.com", "smtp": "250 2.0.0 Ok"}',
            "Sent",
            "To qa@example.com; the mail server answered “250 2.0.0 Ok”.",
        ),
        (
            "FAILURE",
            '{"exc_type": "TestMessageFailed", "exc_message": ["The SMTP server answered 550"]}',
            "Failed",
            "The SMTP server answered 550",
        ),
    ],
)
def test_a_test_message_state_reads_as_a_sentence(
    status: str, result: str, label: str, detail: str
) -> None:
    TaskLink.objects.create(task_id="t-1", kind=TaskLink.Kind.TEST)
    TaskResult.objects.create(task_id="t-1", status=status, result=result)
    state = task_state(task_id="t-1")
    assert state is not None
    assert (state["state"], state["label"], state["detail"]) == (status, label, detail)
    assert state["done"]
