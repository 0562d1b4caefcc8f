"""The dashboard in a real browser: what a new installation does first, the workers that report
themselves, and an upload nobody started that the retention job abandons.

Screenshots: "dashboard-onboarding" (a fresh install) and "dashboard-workers" (the status panel
with a live worker), written to OPSDASH_SCREENSHOT_DIR when it is set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.utils import timezone

from campaigns.models import ImportJob, WorkerHeartbeat
from campaigns.selectors.dashboard import STATS_CACHE_KEY
from campaigns.selectors.system import SYSTEM_CACHE_KEY
from campaigns.tasks import purge_import_files
from tests.browser.support import login, wait_for
from tests.factories import UserFactory
from tests.processes import CeleryProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


def abandoned_upload(age: timedelta) -> ImportJob:
    """An upload left at the mapping page ``age`` ago: pending, no task, never started."""
    job = ImportJob(original_name="left-behind.csv", created_at=timezone.now() - age)
    job.file.save("left-behind.csv", ContentFile(b"email\nada@example.com\n"), save=False)
    job.save()
    return job


def test_a_fresh_install_shows_the_first_steps_live_workers_and_no_phantom_imports(
    live_server: Any, worker: CeleryProcess, page: Any, shots: Callable[[Any, str], None]
) -> None:
    UserFactory.create(username="dana", is_superuser=True, first_name="Dana")
    cache.delete_many([STATS_CACHE_KEY, SYSTEM_CACHE_KEY])
    base = live_server.url
    login(page, base, "dana")

    # 1. A fresh install says what to do first, each step linked and none ticked yet.
    steps = page.locator("#dashboard-onboarding li[data-step]")
    assert steps.count() == 3
    assert page.locator("#dashboard-onboarding li[data-done=yes]").count() == 0
    assert "Import recipients" in steps.nth(0).inner_text()
    page.wait_for_selector("#system-status .opsdash-system")
    shots(page, "dashboard-onboarding")
    for number, path in (
        (1, "/admin/campaigns/importjob/add/"),
        (2, "/admin/campaigns/campaign/add/"),
        (3, "/admin/campaigns/campaign/"),
    ):
        page.locator(f"#dashboard-onboarding li[data-step='{number}'] a").click()
        page.wait_for_url(f"{base}{path}")
        assert page.locator("h1, #content").first.is_visible()
        page.go_back()
        page.wait_for_selector("#dashboard-onboarding")

    # 2. The live worker reports itself: listed as OK, and nothing in warning colours.
    (row,) = WorkerHeartbeat.objects.filter(kind=WorkerHeartbeat.Kind.WORKER)
    panel = page.locator("#system-status .opsdash-system")
    page.wait_for_selector(f"#system-status li[data-worker='{row.hostname}'][data-alive=yes]")
    assert panel.get_attribute("data-healthy") == "yes"
    assert page.locator("#system-status .opsdash-unavailable").count() == 0
    assert "OK" in page.locator(f"li[data-worker='{row.hostname}']").inner_text()
    shots(page, "dashboard-workers")

    # 3. An upload left at the mapping page is not an import running; a day on, the retention
    #    task (run by the worker) abandons it and deletes its file.
    job = abandoned_upload(timedelta(hours=25))
    upload = Path(job.file.path)
    cache.delete(STATS_CACHE_KEY)
    page.reload()
    assert page.locator("[data-kpi=imports]").inner_text() == "0"
    purge_import_files.delay()
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.ABANDONED,
        timeout=60,
        what="the retention task to abandon the upload",
    )
    assert not upload.exists()
    page.goto(f"{base}/admin/campaigns/importjob/")
    page.wait_for_selector("text=Abandoned — never started")
    cache.delete(STATS_CACHE_KEY)
    page.goto(f"{base}/admin/")
    assert page.locator("[data-kpi=imports]").inner_text() == "0"
