"""A batch lease held by someone else: another database session, as another worker would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from campaigns.services.delivery import BatchLease


@contextmanager
def lease_held_elsewhere(task_id: str, send_id: int = 0) -> Iterator[BatchLease]:
    """Holds ``task_id``'s lease on a connection of its own (advisory locks are per session)."""
    other = connections.create_connection("default")
    lease = BatchLease(task_id, send_id, connection=other)
    try:
        assert lease.acquire()
        yield lease
    finally:
        lease.release()
        other.close()
