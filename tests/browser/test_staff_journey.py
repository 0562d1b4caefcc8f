"""A staff member's whole journey in a real browser, against the real stack.

Chromium (Debian's package, driven by Playwright) talks to a live Django server; a real Celery
worker and beat consume RabbitMQ and deliver to a local SMTP sink. The journey: log in, import a
small CSV, compose a campaign and preview it, send a test, schedule it, see it delivered on the
send's page and in the audit trail.

Screenshots of the main screens are written to OPSDASH_SCREENSHOT_DIR when it is set
(``docs/screenshots`` for the documentation), else to pytest's temporary directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Audience, AuditEntry, Campaign, ImportJob, Send
from opsdash.smtp_sink import SmtpSink
from tests.browser.support import PASSWORD, action, tab, wait_for
from tests.factories import UserFactory
from tests.processes import CeleryProcess

CSV = "email,first_name,last_name,city\nada@example.com,Ada,Lovelace,London\n"
CSV += "grace@example.com,Grace,Hopper,Arlington\nalan@example.com,Alan,Turing,Wilmslow\n"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def test_staff_compose_test_schedule_and_audit_a_campaign(
    live_server: Any,
    smtp_sink: SmtpSink,
    worker: CeleryProcess,
    beat: CeleryProcess,
    page: Any,
    shots: Callable[[Any, str], None],
    tmp_path: Path,
) -> None:
    UserFactory.create(
        username="dana", email="dana@example.com", is_superuser=True, first_name="Dana"
    )
    audience = Audience.objects.create(name="Newsletter readers")
    base = live_server.url

    # 1. Log in.
    page.goto(f"{base}/admin/")
    page.fill("input[name=username]", "dana")
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    page.wait_for_selector("#dashboard-kpis")

    # 2. Import a small CSV into the audience.
    csv_path = tmp_path / "readers.csv"
    csv_path.write_text(CSV)
    page.goto(f"{base}/admin/campaigns/importjob/add/")
    page.set_input_files("input[name=file]", str(csv_path))
    page.select_option("select[name=audience]", label=audience.name)
    shots(page, "import-upload")
    page.locator("form button[type=submit], form input[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/mapping/"))
    page.locator("form button[type=submit], form input[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/importjob/\d+/change/"))
    wait_for(
        lambda: ImportJob.objects.filter(status=ImportJob.Status.COMPLETED).exists(),
        timeout=90,
        what="the import to complete",
    )
    assert audience.subscriptions.count() == 3
    page.reload()
    shots(page, "import-done")

    # 3. Compose a campaign and preview it for one of the imported recipients.
    page.goto(f"{base}/admin/campaigns/campaign/add/")
    page.fill("input[name=name]", "Spring newsletter")
    page.fill("input[name=subject]", "Hello {{ recipient.first_name }}")
    page.fill("input[name=from_email]", "News <news@example.com>")
    tab(page, "Content")
    page.select_option("select[name=body_format]", "html")  # written as HTML, by an expert
    page.wait_for_function("document.querySelector('[data-body-editor]').dataset.format === 'html'")
    page.fill(
        "textarea[name=body]",
        "<h1>Hello {{ recipient.first_name }}</h1>"
        "<p>News from {{ recipient.attributes.city }}.</p>",
    )
    tab(page, "Text & web version")
    page.fill("textarea[name=text_body]", "Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}")
    tab(page, "Audience")
    page.get_by_label(audience.name).check()
    tab(page, "Content")
    page.fill("#preview-recipient", "ada@example.com")
    page.click("#preview-refresh")
    page.wait_for_function("document.getElementById('preview-subject').textContent === 'Hello Ada'")
    frame = page.frame_locator("#preview-frame")
    assert "News from London." in frame.locator("body").inner_text()
    shots(page, "campaign-compose-preview")
    page.locator("input[name=_continue], button[name=_continue]").first.click()
    page.wait_for_url(re.compile(r"/campaign/\d+/change/"))
    campaign = Campaign.objects.get(name="Spring newsletter")
    assert list(campaign.audiences.all()) == [audience]

    # 4. Send a test to me: the page returns at once and follows the task's state.
    action(page, "Send a test to me")
    page.wait_for_url(re.compile(r"test_task="))
    page.wait_for_function(
        "document.getElementById('test-send-state').dataset.state === 'SUCCESS'",
        timeout=90_000,
    )
    wait_for(
        lambda: any(m["Subject"] == "[TEST] Hello Sample" for m in smtp_sink.messages),
        timeout=30,
        what="the test message at the sink",
    )
    shots(page, "campaign-test-sent")

    # 5. Schedule it in plain words: once, a little from now.
    when = timezone.now() + timedelta(seconds=25)
    tab(page, "Schedule")
    page.select_option("select[name=schedule_kind]", "once")
    page.wait_for_selector("input[name=scheduled_at_0]", state="visible")
    assert not page.locator("input[name=schedule_crontab]").is_visible()
    page.fill("input[name=scheduled_at_0]", when.strftime("%Y-%m-%d"))
    page.fill("input[name=scheduled_at_1]", when.strftime("%H:%M:%S"))
    shots(page, "campaign-schedule")
    page.locator("input[name=_continue], button[name=_continue]").first.click()
    page.wait_for_url(re.compile(r"/campaign/\d+/change/"))
    action(page, "Schedule")
    page.click("#confirm-submit")  # the confirmation page: count, audiences, channel
    page.wait_for_selector("text=is scheduled")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.periodic_task is not None and campaign.periodic_task.clocked is not None

    # 6. Beat fires it, the worker delivers it: every recipient once.
    wait_for(
        lambda: Send.objects.filter(campaign=campaign, status=Send.Status.COMPLETED).first(),
        timeout=150,
        what="the scheduled send to complete",
    )
    delivered = [m for m in smtp_sink.messages if m["Subject"].startswith("Hello ")]
    assert sorted(m["To"].addresses[0].addr_spec for m in delivered) == [
        "ada@example.com",
        "alan@example.com",
        "grace@example.com",
    ]

    # 7. The send's page shows its deliveries and task results; the audit trail who did what.
    send = Send.objects.get(campaign=campaign)
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    page.wait_for_selector("#send-deliveries tr[data-status=sent]")
    assert page.locator("#send-deliveries tr[data-status=sent]").count() == 3
    page.wait_for_selector("#send-task-results tr[data-state=SUCCESS]")
    page.select_option("#delivery-outcome", "sent")
    page.fill("#delivery-email", "grace@example.com")
    page.click("#delivery-filter button[type=submit]")
    page.wait_for_url(re.compile(r"email=grace"))
    assert page.locator("#send-deliveries tr[data-status=sent]").count() == 1
    page.goto(f"{base}/admin/campaigns/send/{send.pk}/change/")
    shots(page, "send-audit")

    page.goto(f"{base}/admin/django_celery_results/taskresult/?send={send.pk}")
    page.wait_for_selector(f"a[href='/admin/campaigns/send/{send.pk}/change/']")
    shots(page, "task-results")

    page.goto(f"{base}/admin/campaigns/auditentry/")
    actions = set(AuditEntry.objects.filter(campaign=campaign).values_list("action", flat=True))
    assert {"created", "edited", "scheduled"} <= actions
    assert AuditEntry.objects.filter(import_job__isnull=False).exists()
    page.wait_for_selector("text=scheduled")
    shots(page, "audit-trail")

    page.goto(f"{base}/admin/")
    page.wait_for_selector("#system-status .opsdash-system")
    shots(page, "dashboard")
