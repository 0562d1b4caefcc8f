"""``manage.py loadscale``: fills the database with production-sized data for speed checks.

1M recipients (subscribed to one audience), 1M deliveries over 100 sends of 20 campaigns spread
across the last 7 days, 100k task results linked to those sends, and 20k audit entries.
Everything is generated inside PostgreSQL (INSERT ... SELECT generate_series), so a full load
takes about a minute instead of the hours a row-by-row load would.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from campaigns.models import (
    Audience,
    AuditEntry,
    Campaign,
    Delivery,
    ImportJob,
    Recipient,
    Send,
    Subscription,
    TaskLink,
)

MARKER = "Scale test audience"


class Command(BaseCommand):
    help = "Loads 1M recipients, 1M deliveries and 100k task results (PostgreSQL only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--recipients", type=int, default=1_000_000)
        parser.add_argument("--deliveries", type=int, default=1_000_000)
        parser.add_argument("--task-results", type=int, default=100_000)
        parser.add_argument("--sends", type=int, default=100)

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("loadscale needs PostgreSQL (the services profile).")
        if Audience.objects.filter(name=MARKER).exists():
            self.stdout.write("Scale data is loaded already; nothing to do.")
            return
        if options["deliveries"] > options["recipients"]:
            raise CommandError("Each delivery needs its own recipient: raise --recipients.")
        started = time.monotonic()
        with transaction.atomic():
            send_ids = self._small_tables(options["sends"])
            self._step("recipients", _load_recipients, options["recipients"])
            self._step("subscriptions", _load_subscriptions)
            self._step("deliveries", _load_deliveries, options["deliveries"], send_ids)
            self._step("task results", _load_task_results, options["task_results"], send_ids)
            self._step("audit entries", _load_audit, 20_000, send_ids)
        self._step("analyse", _analyse)
        self.stdout.write(self.style.SUCCESS(f"Loaded in {time.monotonic() - started:.0f} s."))

    def _step(self, label: str, func: Any, *args: Any) -> None:
        began = time.monotonic()
        func(*args)
        self.stdout.write(f"  {label}: {time.monotonic() - began:.1f} s")

    def _small_tables(self, sends: int) -> list[int]:
        """Campaigns, sends and imports through the ORM: few rows, and every default applies."""
        now = timezone.now()
        Audience.objects.create(name=MARKER, description="Rows made by manage.py loadscale.")
        campaigns = [
            Campaign.objects.create(
                name=f"Scale campaign {n}",
                subject="Hello {{ recipient.first_name }}",
                from_email="Scale <scale@example.com>",
                text_body="Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}",
                status=Campaign.Status.SENT,
            )
            for n in range(20)
        ]
        created = [
            Send.objects.create(
                campaign=campaigns[n % len(campaigns)],
                occurrence_key=f"scale-{n}",
                status=Send.Status.COMPLETED,
                created_at=now - timedelta(days=7) + timedelta(minutes=100 * n),
                started_at=now - timedelta(days=7) + timedelta(minutes=100 * n),
                finished_at=now - timedelta(days=7) + timedelta(minutes=100 * n + 90),
            )
            for n in range(sends)
        ]
        for n in range(50):
            ImportJob.objects.create(
                file=f"imports/scale-{n}.csv",
                original_name=f"scale-{n}.csv",
                status=ImportJob.Status.COMPLETED,
                total_rows=20_000,
                processed_rows=20_000,
                created_count=20_000,
            )
        return [send.pk for send in created]


def _defaults(model: type[models.Model], given: set[str]) -> tuple[list[str], list[Any]]:
    """Columns the SQL below does not set, with their model defaults (fields added later too)."""
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in given:
            continue
        columns.append(field.column)
        values.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, values


def _table(model: type[models.Model]) -> str:
    """The model's table, quoted for SQL (the names come from the models, never from input)."""
    return connection.ops.quote_name(model._meta.db_table)


def _insert(
    model: type[models.Model], select: dict[str, str], tail: str, params: list[Any]
) -> None:
    """INSERT ... SELECT: ``params`` fill the placeholders of ``select`` then of ``tail``."""
    extra_columns, extra_values = _defaults(model, set(select))
    # The defaults go first, so their placeholders come before the caller's in the statement.
    columns = [*extra_columns, *select]
    expressions = [*(["%s"] * len(extra_values)), *select.values()]
    sql = (
        f"INSERT INTO {_table(model)} ({', '.join(columns)}) SELECT {', '.join(expressions)} {tail}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*extra_values, *params])


def _load_recipients(count: int) -> None:
    _insert(
        Recipient,
        {
            "email": "'scale' || n || '@example.com'",
            "first_name": "'First' || n",
            "last_name": "'Scale'",
            "attributes": (
                "jsonb_build_object('city', (ARRAY['Oslo','Bergen','Lyon','Porto'])[1 + mod(n, 4)])"
            ),
            "status": "CASE WHEN mod(n, 50) = 0 THEN 'unsubscribed' ELSE 'active' END",
            "created_at": "now() - (mod(n, 10000)) * interval '1 minute'",
            "updated_at": "now()",
        },
        "FROM generate_series(1, %s) AS n",
        [count],
    )


def _load_subscriptions() -> None:
    audience_id = Audience.objects.get(name=MARKER).pk
    _insert(
        Subscription,
        {
            "recipient_id": "r.id",
            "audience_id": str(int(audience_id)),
            "status": "'subscribed'",
            "created_at": "r.created_at",
            "updated_at": "r.created_at",
        },
        f"FROM {_table(Recipient)} r WHERE r.email LIKE 'scale%%@example.com'",
        [],
    )


def _load_deliveries(count: int, send_ids: list[int]) -> None:
    """Deliveries spread over 7 days: 93% sent, 4% failed, 2% skipped, 1% still queued."""
    sends = "ARRAY[" + ",".join(str(int(pk)) for pk in send_ids) + "]::bigint[]"
    when = "now() - (r.rn * 604800.0 / %s) * interval '1 second'"
    status = (
        "CASE WHEN mod(r.rn, 100) < 93 THEN 'sent' WHEN mod(r.rn, 100) < 97 THEN 'failed' "
        "WHEN mod(r.rn, 100) < 99 THEN 'skipped' ELSE 'queued' END"
    )
    _insert(
        Delivery,
        {
            "send_id": f"({sends})[(1 + mod(r.rn, {len(send_ids)}))::int]",
            "recipient_id": "r.id",
            "status": status,
            "attempts": "1",
            "last_error": "CASE WHEN mod(r.rn, 100) BETWEEN 93 AND 96 "
            "THEN '550 5.1.1 mailbox unavailable' ELSE '' END",
            "smtp_response": "CASE WHEN mod(r.rn, 100) < 93 THEN '250 2.0.0 OK queued' ELSE '' END",
            "task_id": "md5('batch' || (r.rn / 500))",
            "sent_at": f"CASE WHEN mod(r.rn, 100) < 93 THEN {when} END",
            "updated_at": when,
        },
        f"FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM {_table(Recipient)} "
        "WHERE email LIKE 'scale%%@example.com' ORDER BY id LIMIT %s) r",
        [count, count, count],
    )
    _refresh_send_counters(send_ids)


def _refresh_send_counters(send_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_table(Send)} s SET
              total = c.total, sent_count = c.sent, failed_count = c.failed,
              skipped_count = c.skipped, last_progress_at = s.finished_at
            FROM (
              SELECT send_id, count(*) AS total,
                     count(*) FILTER (WHERE status = 'sent') AS sent,
                     count(*) FILTER (WHERE status = 'failed') AS failed,
                     count(*) FILTER (WHERE status = 'skipped') AS skipped
              FROM {_table(Delivery)} WHERE send_id = ANY(%s) GROUP BY send_id
            ) c WHERE s.id = c.send_id
            """,
            [send_ids],
        )


def _load_task_results(count: int, send_ids: list[int]) -> None:
    """Batch task results (2% failed) and the TaskLink rows tying each one to its send."""
    sends = "ARRAY[" + ",".join(str(int(pk)) for pk in send_ids) + "]::bigint[]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(TaskResult)}"
            # Not an f-string from here: the JSON literals below hold braces.
            """
              (task_id, status, content_type, content_encoding, result, date_done, traceback,
               meta, task_args, task_kwargs, task_name, worker, date_created, date_started,
               periodic_task_name)
            SELECT md5('batch' || n),
                   CASE WHEN mod(n, 50) = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
                   'application/json', 'utf-8',
                   CASE WHEN mod(n, 50) = 0
                     THEN '{"exc_type": "SMTPServerDisconnected", "exc_message": ["gone"]}'
                     ELSE '{"sent": 10, "failed": 0}' END,
                   now() - (n * 604800.0 / %s) * interval '1 second' + interval '4 seconds',
                   CASE WHEN mod(n, 50) = 0
                     THEN 'Traceback (most recent call last): SMTPServerDisconnected' END,
                   '{"children": []}', '[]', '{"send_id": 1}',
                   'campaigns.tasks.deliver_batch',
                   'worker' || (mod(n, 4)) || '@scale-host',
                   now() - (n * 604800.0 / %s) * interval '1 second',
                   now() - (n * 604800.0 / %s) * interval '1 second' + interval '1 second',
                   NULL
            FROM generate_series(1, %s) AS n
            """,
            [count, count, count, count],
        )
    _insert(
        TaskLink,
        {
            "task_id": "md5('batch' || n)",
            "kind": "'batch'",
            "campaign_id": "NULL",
            "send_id": f"({sends})[(1 + mod(n, {len(send_ids)}))::int]",
            "import_job_id": "NULL",
            "created_at": "now() - (n * 604800.0 / %s) * interval '1 second'",
        },
        "FROM generate_series(1, %s) AS n",
        [count, count],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(TaskLink)} l SET campaign_id = s.campaign_id "
            f"FROM {_table(Send)} s WHERE l.send_id = s.id AND l.campaign_id IS NULL"
        )


def _load_audit(count: int, send_ids: list[int]) -> None:
    campaign_ids = sorted(
        set(Send.objects.filter(pk__in=send_ids).values_list("campaign_id", flat=True))
    )
    campaigns = "ARRAY[" + ",".join(str(int(pk)) for pk in campaign_ids) + "]::bigint[]"
    _insert(
        AuditEntry,
        {
            "actor_id": "NULL",
            "action": "(ARRAY['created','edited','approved','sent'])[1 + mod(n, 4)]",
            "campaign_id": f"({campaigns})[(1 + mod(n, {len(campaign_ids)}))::int]",
            "send_id": "NULL",
            "import_job_id": "NULL",
            "changes": "'{}'::jsonb",
            "created_at": "now() - (n * 604800.0 / %s) * interval '1 second'",
        },
        "FROM generate_series(1, %s) AS n",
        [count, count],
    )


def _analyse() -> None:
    """Fresh statistics and visibility maps, as autovacuum would leave a production table."""
    with connection.cursor() as cursor:
        for model in (Recipient, Subscription, Delivery, TaskLink, AuditEntry, Send, TaskResult):
            cursor.execute(f"VACUUM ANALYZE {_table(model)}")
