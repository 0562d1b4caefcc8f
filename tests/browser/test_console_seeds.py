"""Test messages to a seed list, personalised as a chosen recipient, in a real browser.

An editor keeps a seed list of the team's inboxes, then sends a test of a saved campaign to it
as one of the real recipients would read it. The messages are checked at the SMTP sink: one per
seed address, with that recipient's personalisation, marked [TEST], and nobody else mailed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from campaigns.models import Delivery, SeedList, Send
from opsdash.smtp_sink import SmtpSink
from tests.admin.helpers import user_with_roles
from tests.browser.support import login, wait_for
from tests.factories import (
    AudienceFactory,
    CampaignFactory,
    RecipientFactory,
    SubscriptionFactory,
)
from tests.processes import CeleryProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def test_an_editor_sends_a_test_to_a_seed_list_as_a_chosen_recipient(
    live_server: Any,
    smtp_sink: SmtpSink,
    worker: CeleryProcess,
    page: Any,
    shots: Callable[[Any, str], None],
) -> None:
    user_with_roles("editor", username="eddie", email="eddie@example.com")
    ada = RecipientFactory.create(email="ada@example.com", first_name="Ada")
    audience = AudienceFactory.create(name="Readers")
    SubscriptionFactory.create(recipient=ada, audience=audience)
    campaign = CampaignFactory.create(
        name="Autumn news", subject="Hello {{ recipient.first_name }}", from_email="news@x.test"
    )
    campaign.audiences.set([audience])
    base = live_server.url
    login(page, base, "eddie")

    # The seed list, through its own admin page.
    page.goto(f"{base}/admin/campaigns/seedlist/add/")
    page.fill("input[name=name]", "Team inboxes")
    page.fill("textarea[name=addresses]", "qa-gmail@seed.test\nqa-outlook@seed.test\n")
    page.locator("input[name=_save], button[name=_save]").first.click()
    page.wait_for_url(re.compile(r"/seedlist/$"))
    assert SeedList.objects.get(name="Team inboxes").address_list == [
        "qa-gmail@seed.test",
        "qa-outlook@seed.test",
    ]

    # The campaign's test panel: to the seed list, as Ada.
    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
    form = page.locator("#test-send-form")
    form.locator("input[name=to][value=seeds]").check()
    form.locator("select[name=seed_list]").select_option(label="Team inboxes (2)")
    form.locator("input[name=as][value=recipient]").check()
    form.locator("input[name=recipient]").fill("ada@example.com")
    shots(page, "campaign-test-seed-list")
    form.locator("button[type=submit]").click()

    def tests_at_sink() -> list[Any]:
        return [m for m in smtp_sink.messages if m["Subject"].startswith("[TEST]")]

    wait_for(lambda: len(tests_at_sink()) >= 2, timeout=90, what="the two test messages")
    delivered = tests_at_sink()
    assert sorted(m["To"].addresses[0].addr_spec for m in delivered) == [
        "qa-gmail@seed.test",
        "qa-outlook@seed.test",
    ]
    assert {m["Subject"] for m in delivered} == {"[TEST] Hello Ada"}
    # A test touches nothing of the campaign's real sending: no send, no delivery, Ada unmailed.
    assert not Send.objects.filter(campaign=campaign).exists()
    assert not Delivery.objects.exists()
    assert all(m["To"].addresses[0].addr_spec != "ada@example.com" for m in smtp_sink.messages)
    page.wait_for_selector("#test-send-status li")
    status = page.locator("#test-send-status").inner_text()
    assert "qa-gmail@seed.test" in status or "Sent" in status, status
