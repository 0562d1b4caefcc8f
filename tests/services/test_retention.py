"""Import files are kept only as long as their retention: the daily purge."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import ImportJob
from campaigns.selectors.dashboard import running_imports
from campaigns.services.retention import import_files_purge
from campaigns.tasks import purge_import_files
from tests.admin.helpers import user_with_roles

pytestmark = pytest.mark.django_db
Status = ImportJob.Status
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def job_with_files(
    status: str, *, age: timedelta, report: bool = True, **fields: object
) -> ImportJob:
    when = timezone.now() - age
    job = ImportJob(status=status, created_at=when, **fields)
    if status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.ABANDONED):
        job.finished_at = when
    job.file.save("people.csv", ContentFile(b"email\nada@example.com\n"), save=False)
    if report:
        job.error_report.save("rejects.csv", ContentFile(b"line,email\n2,x\n"), save=False)
    job.save()
    return job


def stored(job: ImportJob) -> list[bool]:
    return [Path(f.path).exists() for f in (job.file, job.error_report) if f]


def purge(chunk: int = 500) -> dict[str, int]:
    return import_files_purge(older_than=30 * DAY, unstarted_after=DAY, chunk=chunk).as_dict()


@pytest.mark.parametrize(
    "status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.ABANDONED]
)
def test_a_finished_import_loses_its_upload_and_report_after_the_retention(status: str) -> None:
    old = job_with_files(status, age=31 * DAY)
    paths = [Path(old.file.path), Path(old.error_report.path)]
    recent = job_with_files(status, age=29 * DAY)

    assert purge() == {"files": 1, "reports": 1, "unstarted": 0}

    assert not any(p.exists() for p in paths)
    old.refresh_from_db()
    assert (old.file.name, old.error_report.name, old.status) == ("", "", status)
    assert stored(recent) == [True, True]
    assert purge() == {"files": 0, "reports": 0, "unstarted": 0}  # nothing left to do


def test_a_running_or_queued_import_keeps_its_file_however_old() -> None:
    running = job_with_files(Status.RUNNING, age=90 * DAY, started_at=timezone.now())
    queued = job_with_files(Status.PENDING, age=3 * DAY, task_id="abc")
    assert purge() == {"files": 0, "reports": 0, "unstarted": 0}
    assert stored(running) == [True, True] and stored(queued) == [True, True]


def test_an_upload_never_started_is_abandoned_and_its_file_deleted_after_a_day() -> None:
    stale = job_with_files(Status.PENDING, age=DAY + timedelta(minutes=1), report=False)
    path = Path(stale.file.path)
    fresh = job_with_files(Status.PENDING, age=DAY - timedelta(minutes=5), report=False)

    assert purge()["unstarted"] == 1

    stale.refresh_from_db()
    assert stale.status == Status.ABANDONED and stale.file.name == "" and not path.exists()
    assert stale.get_status_display() == "Abandoned — never started"
    assert "Never started" in stale.message and stale.finished_at is not None
    fresh.refresh_from_db()
    assert fresh.status == Status.PENDING and stored(fresh) == [True]


def test_the_purge_walks_many_jobs_in_chunks() -> None:
    jobs = [job_with_files(Status.COMPLETED, age=40 * DAY) for _ in range(5)]
    assert purge(chunk=2) == {"files": 5, "reports": 5, "unstarted": 0}
    assert not any(any(stored(job)) for job in jobs)


def test_the_daily_task_reads_the_retention_settings(settings: Settings) -> None:
    settings.OPSDASH_IMPORT_RETENTION_DAYS = 2
    job_with_files(Status.COMPLETED, age=3 * DAY)
    assert purge_import_files() == {"files": 1, "reports": 1, "unstarted": 0}
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-import-files"]
    assert entry["task"] == "campaigns.tasks.purge_import_files"
    assert entry["schedule"] == 86400.0
    assert django_settings.OPSDASH_IMPORT_RETENTION_DAYS == 2


def test_an_upload_left_at_the_mapping_page_never_counts_as_running() -> None:
    left = job_with_files(Status.PENDING, age=timedelta(minutes=5), report=False)
    queued = job_with_files(Status.PENDING, age=timedelta(minutes=5), report=False, task_id="t")
    running = job_with_files(Status.RUNNING, age=timedelta(minutes=5), report=False)
    assert set(running_imports()) == {queued, running}
    ImportJob.objects.filter(pk=left.pk).update(created_at=timezone.now() - 2 * DAY)
    purge()
    left.refresh_from_db()
    assert left.status == Status.ABANDONED and left not in running_imports()


def test_the_import_list_says_abandoned_never_started(client: Client) -> None:
    job_with_files(Status.ABANDONED, age=2 * DAY, report=False, original_name="left.csv")
    client.force_login(user_with_roles("auditor"))
    page = client.get(reverse("admin:campaigns_importjob_changelist")).content.decode()
    assert "Abandoned — never started" in page
