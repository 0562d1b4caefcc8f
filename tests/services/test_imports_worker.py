"""A background import run by a real Celery worker on the imports queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files import File
from pytest_django import Settings

from campaigns import publishers
from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription, TaskLink
from campaigns.services.imports import import_job_cancel, import_job_create, import_job_start
from tests.factories import AudienceFactory, UserFactory
from tests.processes import CeleryProcess

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"


@pytest.fixture
def media(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Uploads and reports in a temporary folder that this process and the worker share."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return {"OPSDASH_MEDIA_ROOT": str(tmp_path / "media")}


def test_a_worker_runs_the_import_and_the_job_reports_it(media: dict[str, str]) -> None:
    staff = UserFactory.create()
    audience = AudienceFactory.create()
    with (FIXTURES / "valid.csv").open("rb") as handle:
        job = import_job_create(
            upload=File(handle, name="valid.csv"), audience=audience, created_by=staff
        )
    with CeleryProcess.worker(smtp_port=1, extra_env=media) as worker:
        import_job_start(
            job=job, columns=job.mapping["columns"], by=staff, publish=publishers.publish_import
        )
        deadline = time.monotonic() + 60
        while job.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING):
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.2)
            job.refresh_from_db()

    assert job.status == ImportJob.Status.COMPLETED, job.message
    assert (job.created_count, job.skipped_count, job.invalid_count) == (4, 1, 1)
    assert Recipient.objects.count() == 4
    assert Subscription.objects.filter(audience=audience, source_import=job).count() == 4
    assert TaskLink.objects.get(import_job=job).task_id == job.task_id
    assert list(
        AuditEntry.objects.filter(import_job=job).order_by("id").values_list("action", "actor")
    ) == [("import_started", staff.pk), ("import_finished", staff.pk)]


def test_a_cancel_while_the_worker_imports_writes_nothing(
    media: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("email,first_name\n")
        handle.writelines(f"person{i}@example.com,P{i}\n" for i in range(300_000))
    staff = UserFactory.create()
    with path.open("rb") as handle:
        job = import_job_create(
            upload=File(handle, name="big.csv"), audience=None, created_by=staff
        )
    # Small chunks, so the worker looks for a cancel often.
    with CeleryProcess.worker(
        smtp_port=1, extra_env={**media, "OPSDASH_IMPORT_CHUNK_ROWS": "2000"}
    ) as worker:
        import_job_start(
            job=job, columns=job.mapping["columns"], by=staff, publish=publishers.publish_import
        )
        deadline = time.monotonic() + 60
        while not ImportJob.objects.filter(pk=job.pk, processed_rows__gt=0).exists():
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.02)
        import_job_cancel(job=job, by=staff)
        while job.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING):
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.1)
            job.refresh_from_db()

    assert job.status == ImportJob.Status.CANCELLED, job.message
    assert Recipient.objects.count() == 0
    assert AuditEntry.objects.filter(import_job=job, action="import_cancelled").count() == 1
