"""The task result backend: django_celery_results' table, surviving a database restart.

Celery retries a result write only for errors its backend calls safe to retry; the stock
Django backend names only ``InterfaceError`` (a connection already closed). A restart of
PostgreSQL shows first as ``OperationalError`` on the dead connection: without a retry Celery
cannot store STARTED, gives up on the message before the task body runs, and a result stays
STARTED forever when its final write fails the same way.
"""

from __future__ import annotations

from typing import Any

from django.db import OperationalError, connection
from django_celery_results.backends.database import DatabaseBackend


class ResilientDatabaseBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc: Any) -> bool:
        if isinstance(exc, OperationalError):
            connection.close()  # the next attempt opens a fresh connection
            return True
        return bool(super().exception_safe_to_retry(exc))
