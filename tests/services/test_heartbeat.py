"""Workers and beat write their own heartbeats; the status panel reads them on every profile."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from pytest_django import Settings

from campaigns.models import Campaign, WorkerHeartbeat
from campaigns.selectors.system import ago, system_status
from campaigns.services.heartbeat import Beat, heartbeat_write, heartbeats_purge
from opsdash.smtp_sink import SmtpSink
from tests.factories import CampaignFactory
from tests.processes import CeleryProcess, wait_for

pytestmark = pytest.mark.django_db
Kind = WorkerHeartbeat.Kind


def beat_of(hostname: str, *, queues: tuple[str, ...] = (), age: float = 0.0) -> None:
    now = timezone.now()
    kind = Kind.WORKER if queues else Kind.BEAT
    beat = Beat(hostname, kind, queues, pid=42, concurrency=4, started_at=now - timedelta(hours=1))
    heartbeat_write(beat=beat, now=now - timedelta(seconds=age))


@pytest.fixture(autouse=True)
def _no_broker_question(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about heartbeats: the embedded transport answers "not reported" at once.
    from opsdash.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "filesystem://")
    from django.core.cache import cache

    from campaigns.selectors.system import SYSTEM_CACHE_KEY

    cache.delete(SYSTEM_CACHE_KEY)


def test_ago_reads_in_the_largest_whole_unit() -> None:
    assert [ago(3), ago(59.9), ago(130), ago(3 * 3600 + 5), ago(2 * 86400)] == [
        "3 s",
        "59 s",
        "2 min",
        "3 h",
        "2 days",
    ]


def test_a_heartbeat_upserts_one_row_per_process() -> None:
    beat_of("a@host", queues=("delivery",), age=30)
    beat_of("a@host", queues=("delivery", "imports"))
    row = WorkerHeartbeat.objects.get()
    assert row.queues == ["delivery", "imports"]
    assert timezone.now() - row.last_seen_at < timedelta(seconds=5)


def test_silent_rows_past_the_retention_are_purged() -> None:
    beat_of("old@host", queues=("delivery",), age=25 * 3600)
    beat_of("new@host", queues=("delivery",), age=60)
    assert heartbeats_purge(older_than=timedelta(hours=24)) == 1
    assert list(WorkerHeartbeat.objects.values_list("hostname", flat=True)) == ["new@host"]


def test_fresh_workers_covering_every_queue_give_no_warning() -> None:
    beat_of("one@host", queues=tuple(django_settings.QUEUES))
    status = system_status()
    assert status["warning"] is False and status["uncovered"] == []
    (line,) = status["workers"]
    assert line.alive and line.status == "OK" and not line.warn
    assert not status["depths_reported"] and not status["broker_down"]


def test_a_silent_worker_warns_only_when_nobody_else_covers_its_queues(settings: Settings) -> None:
    settings.OPSDASH_WORKER_SILENT_SECONDS = 60
    queues = tuple(django_settings.QUEUES)
    beat_of("gone@host", queues=queues, age=130)
    status = system_status()
    assert status["warning"] and status["uncovered"] == list(queues)
    assert status["workers"][0].status == "Silent for 2 min" and status["workers"][0].warn

    beat_of("replacement@host", queues=queues)  # e.g. the container came back under a new name
    status = system_status()
    gone = next(w for w in status["workers"] if w.hostname == "gone@host")
    assert not gone.warn and not status["warning"]


def test_a_queue_no_worker_consumes_is_a_warning() -> None:
    beat_of("partial@host", queues=tuple(django_settings.QUEUES[:1]))
    status = system_status()
    assert status["warning"] and status["uncovered"] == list(django_settings.QUEUES[1:])


def test_beat_matters_only_while_something_is_scheduled() -> None:
    beat_of("all@host", queues=tuple(django_settings.QUEUES))
    assert system_status()["beat_warn"] is False  # nothing scheduled, no beat: fine
    CampaignFactory.create(status=Campaign.Status.SCHEDULED)
    assert system_status()["beat_warn"] is True
    beat_of("beat@host")
    status = system_status()
    assert status["beat_warn"] is False and status["beat"].alive


@pytest.mark.services
def test_a_real_worker_reports_itself_and_then_goes_silent(
    transactional_db: None, smtp_sink: SmtpSink, settings: Settings
) -> None:
    settings.OPSDASH_WORKER_SILENT_SECONDS = 3
    worker = CeleryProcess.worker(
        smtp_port=smtp_sink.port, extra_env={"OPSDASH_HEARTBEAT_SECONDS": "1"}
    )
    with worker:
        row = WorkerHeartbeat.objects.get(kind=Kind.WORKER)  # written before "ready."
        assert row.hostname.startswith("test-") and sorted(row.queues) == sorted(
            django_settings.QUEUES
        )
        assert row.concurrency == 2 and row.pid > 0
        first_seen = row.last_seen_at
        wait_for(
            lambda: WorkerHeartbeat.objects.get(pk=row.pk).last_seen_at > first_seen,
            timeout=10,
            what="a second heartbeat",
            logs=worker.log,
        )
        status = system_status()
        assert status["workers"][0].alive and not status["warning"]
    time.sleep(settings.OPSDASH_WORKER_SILENT_SECONDS + 1)
    status = system_status()
    (line,) = status["workers"]
    assert not line.alive and line.status.startswith("Silent for") and line.warn
