"""The Celery application: configured from Django settings (CELERY_*), queues declared here."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

# Connects the heartbeat's signal handlers; they fire only in worker and beat processes.
from opsdash import heartbeat  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")

app = Celery("opsdash")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _declare_queues(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.conf.task_queues = [Queue(name) for name in settings.QUEUES]


app.autodiscover_tasks()
