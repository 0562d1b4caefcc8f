"""The batched TaskResult purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult
from pytest_django import Settings

from campaigns.services.results import task_results_purge

pytestmark = pytest.mark.django_db


def results(count: int, *, age: timedelta) -> None:
    done = timezone.now() - age
    TaskResult.objects.bulk_create(
        TaskResult(task_id=f"{age.days}-{i}", status="SUCCESS", date_done=done)
        for i in range(count)
    )
    TaskResult.objects.filter(task_id__startswith=f"{age.days}-").update(date_done=done)


def test_it_deletes_old_results_in_chunks_and_keeps_recent_ones() -> None:
    results(23, age=timedelta(days=40))
    results(4, age=timedelta(days=1))

    deleted = task_results_purge(older_than=timedelta(days=30), chunk=5)

    assert deleted == 23
    assert TaskResult.objects.count() == 4


def test_a_second_purge_finds_nothing() -> None:
    results(3, age=timedelta(days=40))
    task_results_purge(older_than=timedelta(days=30))

    assert task_results_purge(older_than=timedelta(days=30)) == 0


def test_celerys_one_statement_cleanup_is_off_and_the_purge_is_scheduled(
    settings: Settings,
) -> None:
    assert settings.CELERY_RESULT_EXPIRES is None
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "campaigns.tasks.purge_task_results" in scheduled
