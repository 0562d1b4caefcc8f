"""The campaign toolbar in a real browser: per role and status only the controls that apply,
a reason where an expected one is out of reach, confirmation with the count the launch creates,
a success message that leads to the send, a read-only sent campaign and Duplicate, an
approver's preview of the saved campaign (cleared when it answers with an error), and no error
in the browser console on any of these pages.

Screenshots: campaign-toolbar-draft, campaign-confirm-send, campaign-sent-readonly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Audience, Campaign, Delivery, Recipient, Send, Subscription
from opsdash.smtp_sink import SmtpSink
from tests.admin.helpers import user_with_roles
from tests.browser.support import action, login, wait_for
from tests.factories import CampaignFactory, RecipientFactory, UserFactory
from tests.processes import CeleryProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

# What each role finds on a ready draft: (buttons it may press, {button: reason shown}).
DRAFT_TOOLBAR: dict[str, tuple[set[str], dict[str, str]]] = {
    "dana": ({"send_now", "schedule_campaign", "approve", "send_test_to_me", "duplicate"}, {}),
    "eddie": (
        {"send_test_to_me", "duplicate"},
        {
            "Send now": "Only approvers can send this",
            "Schedule": "Only approvers can schedule this",
            "Approve": "Only approvers can approve this",
        },
    ),
    "alex": (
        {"send_now", "schedule_campaign", "approve"},
        {
            "Send a test to me": "Only editors can send test messages",
            "Duplicate": "Only editors can duplicate campaigns",
        },
    ),
}
ALL_BUTTONS = {
    "send_now",
    "schedule_campaign",
    "unschedule_campaign",
    "approve",
    "cancel_campaign",
    "send_test_to_me",
    "duplicate",
}


def readers() -> Audience:
    """Three subscribers, one of whom has unsubscribed everywhere: two get the campaign."""
    audience = Audience.objects.create(name="Newsletter readers")
    for status in ("active", "active", "unsubscribed"):
        Subscription.objects.create(
            recipient=RecipientFactory.create(status=status), audience=audience
        )
    return audience


def buttons(page: Any, campaign: Campaign) -> set[str]:
    """The toolbar links that act on this campaign (greyed-out entries have no link)."""
    hrefs = page.eval_on_selector_all(
        f"a[href*='/campaign/{campaign.pk}/']", "links => links.map(a => a.getAttribute('href'))"
    )
    return {href.rstrip("/").rsplit("/", 1)[-1] for href in hrefs} & ALL_BUTTONS


def reasons(page: Any) -> dict[str, str]:
    """Each greyed-out entry's label (after its icon's name) and the reason it carries."""
    found: dict[str, str] = page.eval_on_selector_all(
        "a[data-unavailable]",
        "links => Object.fromEntries(links.map(a => [a.textContent.trim().split(/\\s+/).slice(1)"
        ".join(' '), a.dataset.unavailable]))",
    )
    return found


def console_errors(page: Any) -> list[str]:
    """Collects what the page logs as an error (with where), and every uncaught exception."""
    errors: list[str] = []

    def logged(message: Any) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url', '')}; {page.url})")

    page.on("console", logged)
    page.on("pageerror", lambda error: errors.append(f"{error} ({page.url})"))
    return errors


def test_the_toolbar_follows_status_and_role_and_send_now_confirms_the_launch_count(
    live_server: Any,
    smtp_sink: SmtpSink,
    worker: CeleryProcess,
    new_page: Callable[..., Any],
    shots: Callable[[Any, str], None],
) -> None:
    base = live_server.url
    UserFactory.create(username="dana", email="dana@example.com", is_superuser=True)
    user_with_roles("editor", username="eddie", email="eddie@example.com")
    user_with_roles("approver", username="alex", email="alex@example.com")
    audience = readers()
    soon = timezone.now() + timedelta(days=1)
    draft = CampaignFactory.create(
        name="Spring newsletter", audiences=[audience], schedule_kind="once", scheduled_at=soon
    )
    scheduled = CampaignFactory.create(
        name="Summer newsletter", audiences=[audience], status=Campaign.Status.SCHEDULED
    )
    pages = {}
    errors: dict[str, list[str]] = {}

    # 1. A draft, for each role: the buttons it may press, a reason for the others.
    for username, (allowed, why) in DRAFT_TOOLBAR.items():
        page = pages[username] = new_page()
        errors[username] = console_errors(page)
        login(page, base, username)
        page.goto(f"{base}/admin/campaigns/campaign/{draft.pk}/change/")
        assert buttons(page, draft) == allowed, username
        assert reasons(page) == why, username
        for label, reason in why.items():  # also written out under the buttons
            assert f"{label}: {reason}" in page.inner_text("#campaign-unavailable")
        if username == "eddie":
            shots(page, "campaign-toolbar-draft")
        if username == "alex":  # an approver previews what they approve, as anyone
            page.wait_for_function("document.getElementById('campaign-preview').dataset.rendered")
            assert page.inner_text("#preview-subject") and page.inner_text("#preview-to")
            page.fill("#preview-recipient", "nobody@example.com")
            page.click("#preview-refresh")
            page.wait_for_selector("#preview-error:not([hidden])")
            assert page.inner_text("#preview-error") == "No recipient has this address."
            assert page.inner_text("#preview-subject") == page.inner_text("#preview-to") == ""

    # 2. A scheduled campaign: Unschedule instead of Schedule, for those who may send.
    dana, alex = pages["dana"], pages["alex"]
    alex.goto(f"{base}/admin/campaigns/campaign/{scheduled.pk}/change/")
    assert buttons(alex, scheduled) == {"send_now", "unschedule_campaign", "approve"}

    # 3. Send now: the confirmation names the count after suppression, the audience, the channel.
    dana.goto(f"{base}/admin/campaigns/campaign/{draft.pk}/change/")
    action(dana, "Send now")
    dana.wait_for_selector("#campaign-confirm")
    count = int(dana.get_attribute("#confirm-recipients", "data-count"))
    assert count == 2
    assert "Newsletter readers — 3 subscribed" in dana.inner_text("#confirm-audiences")
    assert dana.inner_text("#confirm-channel") == f"SMTP relay 127.0.0.1:{smtp_sink.port}"
    shots(dana, "campaign-confirm-send")
    dana.click("#confirm-submit")
    dana.wait_for_selector("text=is being sent")

    # 4. The success message leads to the send, whose rows are exactly the count confirmed.
    dana.click("text=Follow its send")
    dana.wait_for_url(re.compile(r"/admin/campaigns/send/\d+/change/"))
    send = Send.objects.get(campaign=draft)
    assert Delivery.objects.filter(send=send).count() == count
    suppressed = Recipient.objects.get(status="unsubscribed")
    assert not Delivery.objects.filter(send=send, recipient=suppressed).exists()
    wait_for(
        lambda: Send.objects.filter(pk=send.pk, status=Send.Status.COMPLETED).exists(),
        timeout=90,
        what="the send to complete",
    )

    # 5. Sent: read-only, Send now greyed out with why, Duplicate makes a new draft.
    for username, page in pages.items():
        page.goto(f"{base}/admin/campaigns/campaign/{draft.pk}/change/")
        duplicate = "" if username == "alex" else ": duplicate it to send again"  # alex may not
        assert reasons(page)["Send now"] == f"Already sent{duplicate}"
        assert page.locator("#campaign-read-only").is_visible()
        assert page.locator("[name=_save]").count() == 0
    shots(dana, "campaign-sent-readonly")
    # Greyed-out entries and the read-only schedule run no script that fails.
    assert errors == {username: [] for username in DRAFT_TOOLBAR}
    action(dana, "Duplicate")
    dana.wait_for_selector("text=is a new draft made from")
    copy = Campaign.objects.get(name="Copy of Spring newsletter")
    assert dana.url.endswith(f"/campaign/{copy.pk}/change/")
    assert copy.status == Campaign.Status.DRAFT and list(copy.audiences.all()) == [audience]
