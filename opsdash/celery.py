"""The Celery application: configured from Django settings (CELERY_*), queues declared here.

A worker refuses to start (exit status 78, EX_CONFIG) when the configuration would only fail
later, in the middle of a send: a system check reports an error (a DKIM key that does not parse,
a channel without its credentials), or a queue exists in RabbitMQ with another type than
OPSDASH_QUORUM_QUEUES asks for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import amqp.exceptions
import kombu.exceptions
from celery import Celery
from celery.result import AsyncResult
from celery.signals import task_postrun, task_prerun, worker_init
from django.db import close_old_connections
from kombu import Exchange, Queue

# Connects the heartbeat's signal handlers; they fire only in worker and beat processes.
from opsdash import heartbeat  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")

logger = logging.getLogger(__name__)

# sysexits.h: "configuration error". A supervisor that restarts on failure still shows why.
EX_CONFIG = 78
# RabbitMQ's reply to a declaration whose arguments differ from the existing queue's.
PRECONDITION_FAILED = amqp.exceptions.PreconditionFailed


class OpsdashCelery(Celery):
    def send_task(self, *args: Any, **options: Any) -> AsyncResult[Any]:
        """Rounds a countdown under a second up to one second when quorum queues are on.

        Native delayed delivery counts whole seconds and refuses a countdown that truncates to
        zero (ValueError), while the outage retries start at about a second with jitter.
        """
        from django.conf import settings

        countdown = options.get("countdown")
        if settings.OPSDASH_QUORUM_QUEUES and countdown is not None and 0 < countdown < 1:
            options["countdown"] = 1
        return super().send_task(*args, **options)


app = OpsdashCelery("opsdash")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after each task unless
# this is set, so DATABASE_CONN_MAX_AGE never applied in a worker: each batch paid for a new
# PostgreSQL backend. Tasks get Django's request rules instead (``_connections_tidy``).
app.conf["CELERY_DB_REUSE_MAX"] = 1_000_000


@task_prerun.connect
@task_postrun.connect
def _connections_tidy(sender: Any = None, **kwargs: Any) -> None:
    """Closes a connection past DATABASE_CONN_MAX_AGE or broken (a restarted PostgreSQL), as
    Django does around each request; a kept one is health-checked on its first use. A task run
    in place (eager) shares its caller's connection and transaction: left alone."""
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


def task_queues(names: Sequence[str], *, quorum: bool) -> list[Queue]:
    """The queues every process declares: classic by default, quorum when asked.

    A quorum queue is bound to a topic exchange of its own (named ``<queue>.topic``), because
    Celery's native delayed delivery, which carries countdown retries with quorum queues, routes
    through topic exchanges only; with the default direct exchange a retry would instead wait
    unacked in a worker's memory. The name differs from the classic queue's direct exchange
    (named like the queue) so that the two never clash in one virtual host.
    """
    if not quorum:
        return [Queue(name) for name in names]
    return [
        Queue(
            name,
            Exchange(f"{name}.topic", type="topic"),
            routing_key=name,
            queue_arguments={"x-queue-type": "quorum"},
        )
        for name in names
    ]


@app.on_after_configure.connect
def _declare_queues(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.conf.task_queues = task_queues(settings.QUEUES, quorum=settings.OPSDASH_QUORUM_QUEUES)


@worker_init.connect
def _refuse_bad_configuration(sender: Any = None, **_: object) -> None:
    """Stops a worker before it consumes anything if its configuration cannot work."""
    problems = system_check_errors() + queue_type_conflicts(app)
    if not problems:
        return
    for problem in problems:
        logger.critical("Worker not started: %s", problem)
    raise SystemExit(EX_CONFIG)


def system_check_errors() -> list[str]:
    """The errors of Django's system checks (as ``manage.py check`` runs them), one line each.

    Warnings and silenced checks (SILENCED_SYSTEM_CHECKS) do not stop a worker, as they do not
    stop ``manage.py migrate``.
    """
    import django
    from django.apps import apps
    from django.core.checks import ERROR, run_checks

    if not apps.ready:
        django.setup()
    return [
        f"{message.id}: {message.msg}" + (f" ({message.hint})" if message.hint else "")
        for message in run_checks()
        if message.level >= ERROR and not message.is_silenced()
    ]


def queue_type_conflicts(celery: Celery) -> list[str]:
    """Queues that exist in RabbitMQ with another type than this configuration declares.

    RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED); the
    worker would otherwise log that in a loop of reconnections. A broker that cannot be
    reached now is not a conflict: the worker's own connection retries handle it.
    """
    from django.conf import settings

    refused: list[str] = []
    reply = ""
    try:
        with celery.connection_for_write() as conn:
            if conn.transport.driver_type != "amqp":
                return []
            conn.ensure_connection(max_retries=1)
            for queue in celery.amqp.queues.values():
                try:
                    queue.bind(conn.channel()).declare()
                except PRECONDITION_FAILED as exc:
                    refused.append(queue.name)
                    reply = reply or str(exc)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        logger.warning("Queue types not checked, the broker is not reachable: %s", exc)
    if not refused:
        return []
    return [_conflict_message(refused, settings.OPSDASH_QUORUM_QUEUES, reply)]


def _conflict_message(names: list[str], quorum: bool, reply: str) -> str:
    wanted, found = ("quorum", "classic") if quorum else ("classic", "quorum")
    return (
        f"RabbitMQ has {', '.join(repr(name) for name in names)} as {found} queues but "
        f"OPSDASH_QUORUM_QUEUES={str(quorum).lower()} declares them {wanted}, and a queue cannot "
        f"change type. Drain and delete the {found} queues, or give the {wanted} ones new names "
        "with OPSDASH_QUEUE_PREFIX (docs/operations.md, 'Moving to quorum queues'). RabbitMQ "
        f"said: {reply}"
    )


app.autodiscover_tasks()
