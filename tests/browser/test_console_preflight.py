"""The Pre-flight panel in a real browser: a campaign whose From domain publishes no DMARC
record shows it as BLOCK among the OK and warning badges, an approver overrides it with a
reason, and the badge turns to "Overridden".

Screenshots: campaign-preflight-blocked, campaign-preflight-overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from campaigns.services.preflight import preflight_dns_forget
from tests.admin.helpers import user_with_roles
from tests.browser.support import login
from tests.factories import AudienceFactory, CampaignFactory
from tests.services.preflight_fakes import FakeResolver, dkim_key, good_dns

__all__ = ["dkim_key", "good_dns"]  # fixtures
pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def domain() -> str:
    return "example-shop.test"  # a readable domain for the screenshots


def badges(page: Any) -> dict[str, str]:
    found: dict[str, str] = page.eval_on_selector_all(
        "#preflight [data-code]",
        "els => Object.fromEntries(els.map(e => [e.dataset.code, e.dataset.severity]))",
    )
    return found


def test_an_approver_sees_the_blocking_check_and_overrides_it(
    live_server: Any,
    good_dns: FakeResolver,
    domain: str,
    new_page: Callable[..., Any],
    shots: Callable[[Any, str], None],
) -> None:
    del good_dns.records[f"_dmarc.{domain}"]
    user_with_roles("approver", username="alex", email="alex@example.com")
    campaign = CampaignFactory.create(
        name="Spring newsletter",
        from_email=f"Example Shop <news@{domain}>",
        body='<p>Hi {{ recipient.first_name }}</p><a href="/spring">See the offers</a>',
        audiences=[AudienceFactory.create()],
    )
    preflight_dns_forget(campaign=campaign)  # answers another run may have cached
    page = new_page()
    login(page, live_server.url, "alex")
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/#preflight")
    assert badges(page) == {
        "spf_ok": "ok",
        "dkim_ok": "ok",
        "dmarc_missing": "block",
        "alignment_ok": "ok",
        "list_unsubscribe_ok": "ok",
        "list_unsubscribe_not_https": "warn",
        "html_size_ok": "ok",
        "text_ok": "ok",
        "links_not_absolute": "warn",
    }
    assert "Sending is blocked" in page.inner_text("#preflight-summary")
    page.locator("#preflight").scroll_into_view_if_needed()
    shots(page, "campaign-preflight-blocked")

    page.fill("#preflight-reason", "DMARC record goes live with the DNS change at noon")
    page.locator("#preflight-override button[type=submit]").click()
    page.wait_for_selector("[data-code=dmarc_missing][data-severity=overridden]")
    assert "DMARC record goes live" in page.inner_text("#preflight-summary")
    page.locator("#preflight").scroll_into_view_if_needed()
    shots(page, "campaign-preflight-overridden")
