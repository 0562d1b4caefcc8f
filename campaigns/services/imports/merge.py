"""The set-based merge of the staged rows into recipients and subscriptions.

A few statements over the whole file, run inside the caller's transaction: classify and
count, upsert recipients, subscribe. Suppression is re-checked by the statements themselves,
so an address that unsubscribes while an import runs is not re-activated by it.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from campaigns.models import ImportJob, Recipient, Subscription, Suppression
from campaigns.services.audiences import RESUBSCRIBABLE_STATUSES, SUPPRESSED_STATUSES
from campaigns.services.imports.base import ImportCounts, cancel_check
from campaigns.services.imports.staging import Staging
from campaigns.services.suppressions import REASON_STATUS

RECIPIENTS = Recipient._meta.db_table
SUBSCRIPTIONS = Subscription._meta.db_table
SUPPRESSIONS = Suppression._meta.db_table
_ACTIVE = Recipient.Status.ACTIVE
_SUBSCRIBED = Subscription.Status.SUBSCRIBED
# What a resubscribing import still leaves alone: a spam complaint needs a person's decision.
_NEVER_RESUBSCRIBED = tuple(s for s in SUPPRESSED_STATUSES if s not in RESUBSCRIBABLE_STATUSES)
# How many re-subscribed recipients the audit entry names by id; the count is always exact.
RESUBSCRIBED_IDS_KEPT = 1_000


def _in(values: tuple[str, ...]) -> str:
    # Status literals are our own TextChoices values, never user input.
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _left_alone(job: ImportJob) -> tuple[str, ...]:
    """The statuses this import may not touch."""
    return _NEVER_RESUBSCRIBED if job.resubscribe else SUPPRESSED_STATUSES


def staged_merge(*, job: ImportJob, store: Staging, counts: ImportCounts) -> None:
    """Classifies, upserts and subscribes the staged rows, filling in ``counts``.

    Runs inside the caller's transaction, which also finishes the job, so a cancel noticed
    between statements rolls everything back.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        store.prepare(cursor)
        if counts.needs_dedupe:
            counts.skipped += _stage_dedupe(cursor)
        # The parser noted later duplicates by address only; name the line they repeat.
        cursor.execute(
            "UPDATE import_rejects SET reason = 'duplicate of line ' || s.line, kind = 'skipped' "
            "FROM import_stage s WHERE import_rejects.kind = 'duplicate' "
            "AND s.email = import_rejects.email"
        )
        suppressed = _rejects_suppressed(cursor, job)
        cancel_check(job)
        created, updated, existing = _classify(cursor, job, store)
        if job.resubscribe:
            counts.resubscribed, counts.resubscribed_ids = _resubscribed(cursor, job)
        _recipients_upsert(cursor, job, store, now)
        _suppressions_link(cursor)
        cancel_check(job)
        if job.audience_id:
            _subscriptions_upsert(cursor, job, now)
    counts.created, counts.updated = created, updated
    counts.unchanged = existing - updated
    counts.skipped += suppressed


def _stage_dedupe(cursor: CursorWrapper) -> int:
    """Rows repeating an earlier line's address become duplicates, for files too big to dedupe
    in memory. Returns how many."""
    cursor.execute(
        "INSERT INTO import_rejects (line, email, reason, kind) "
        "SELECT s.line, s.email, 'duplicate', 'duplicate' FROM import_stage s WHERE EXISTS "
        "(SELECT 1 FROM import_stage t WHERE t.email = s.email AND t.line < s.line)"
    )
    found = int(cursor.rowcount)
    cursor.execute(
        "DELETE FROM import_stage WHERE line IN "
        "(SELECT line FROM import_rejects WHERE kind = 'duplicate')"
    )
    return found


def _eligible(table: str, job: ImportJob) -> str:
    """Rows of ``table`` (a recipient) the import may change: suppression is respected."""
    return f"{table}.status NOT IN {_in(_left_alone(job))}"


def _rejects_suppressed(cursor: CursorWrapper, job: ImportJob) -> int:
    cursor.execute(
        "INSERT INTO import_rejects (line, email, reason, kind) "
        "SELECT u.line, u.email, 'the address is ' || r.status || "
        f"'{'' if job.resubscribe else ' and resubscribe was not chosen'}', 'skipped' "
        f"FROM import_stage u JOIN {RECIPIENTS} r ON r.email = u.email "
        f"WHERE r.status IN {_in(_left_alone(job))}"
    )
    return int(cursor.rowcount)


def _classify(cursor: CursorWrapper, job: ImportJob, store: Staging) -> tuple[int, int, int]:
    """(new addresses, existing ones that change, existing ones the import may touch)."""
    changed = (
        f"(u.first_name <> '' AND u.first_name <> r.first_name) "
        f"OR (u.last_name <> '' AND u.last_name <> r.last_name) "
        f"OR {store.attributes_changed('r', store.attributes())} "
        f"OR r.status <> '{_ACTIVE}'"
    )
    join_subscription = ""
    params: list[Any] = []
    if job.audience_id:
        join_subscription = (
            f"LEFT JOIN {SUBSCRIPTIONS} s ON s.recipient_id = r.id AND s.audience_id = %s"
        )
        params.append(job.audience_id)
        changed += " OR s.id IS NULL"
        if job.resubscribe:
            changed += f" OR s.status <> '{_SUBSCRIBED}'"
    eligible = _eligible("r", job)
    cursor.execute(
        "SELECT "
        "coalesce(sum(CASE WHEN r.id IS NULL THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN r.id IS NOT NULL AND {eligible} AND ({changed}) "
        "THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN r.id IS NOT NULL AND {eligible} THEN 1 ELSE 0 END), 0) "
        f"FROM import_stage u LEFT JOIN {RECIPIENTS} r ON r.email = u.email "
        f"{join_subscription}",
        params,
    )
    created, updated, existing = cursor.fetchone()
    return int(created), int(updated), int(existing)


def _resubscribed(cursor: CursorWrapper, job: ImportJob) -> tuple[int, list[int]]:
    """Known addresses this import re-subscribes: opted out or bounced, or (with an audience)
    unsubscribed from it. Read before the upsert changes them: (how many, the first ids)."""
    join_subscription, params, condition = "", [], f"r.status IN {_in(RESUBSCRIBABLE_STATUSES)}"
    if job.audience_id:
        join_subscription = (
            f"LEFT JOIN {SUBSCRIPTIONS} s ON s.recipient_id = r.id AND s.audience_id = %s"
        )
        params.append(job.audience_id)
        condition += (
            f" OR (s.status <> '{_SUBSCRIBED}' AND r.status NOT IN {_in(_NEVER_RESUBSCRIBED)})"
        )
    cursor.execute(
        f"SELECT count(*) OVER (), r.id FROM import_stage u "
        f"JOIN {RECIPIENTS} r ON r.email = u.email {join_subscription} "
        f"WHERE {condition} ORDER BY r.id LIMIT {RESUBSCRIBED_IDS_KEPT}",
        params,
    )
    rows = cursor.fetchall()
    return (int(rows[0][0]) if rows else 0), [int(row[1]) for row in rows]


def _recipients_upsert(cursor: CursorWrapper, job: ImportJob, store: Staging, now: Any) -> None:
    """New addresses are inserted; known ones get non-blank names and merged attributes.

    The WHERE of the update re-checks suppression, so an address that unsubscribed while the
    import ran is not re-activated by it.
    """
    t = RECIPIENTS
    cursor.execute(
        f"INSERT INTO {t} (email, first_name, last_name, attributes, status, created_at, "
        "updated_at) "
        f"SELECT u.email, u.first_name, u.last_name, {store.attributes()}, {_new_status()}, "
        "%s, %s "
        "FROM import_stage u WHERE 1 = 1 ORDER BY u.email "
        "ON CONFLICT (email) DO UPDATE SET "
        f"first_name = CASE WHEN excluded.first_name <> '' THEN excluded.first_name "
        f"ELSE {t}.first_name END, "
        f"last_name = CASE WHEN excluded.last_name <> '' THEN excluded.last_name "
        f"ELSE {t}.last_name END, "
        f"attributes = {store.attributes_merged(t, 'excluded.attributes')}, "
        f"status = '{_ACTIVE}', updated_at = excluded.updated_at "
        f"WHERE {_eligible(t, job)} AND ("
        f"(excluded.first_name <> '' AND excluded.first_name <> {t}.first_name) "
        f"OR (excluded.last_name <> '' AND excluded.last_name <> {t}.last_name) "
        f"OR {store.attributes_changed(t, 'excluded.attributes')} OR {t}.status <> '{_ACTIVE}')",
        [now, now],
    )


def _new_status() -> str:
    """SQL for a new address's status: active, unless the suppression list holds it (a bounce
    or a complaint seen before anyone imported the address), then what that suppression says."""
    cases = " ".join(f"WHEN '{reason}' THEN '{status}'" for reason, status in REASON_STATUS.items())
    return (
        f"COALESCE((SELECT CASE x.reason {cases} END FROM {SUPPRESSIONS} x "
        f"WHERE x.email = u.email), '{_ACTIVE}')"
    )


def _suppressions_link(cursor: CursorWrapper) -> None:
    """Suppressed addresses this import created now have a recipient: the list names it."""
    cursor.execute(
        f"UPDATE {SUPPRESSIONS} SET recipient_id = "
        f"(SELECT r.id FROM {RECIPIENTS} r WHERE r.email = {SUPPRESSIONS}.email) "
        f"WHERE recipient_id IS NULL AND email IN (SELECT email FROM import_stage)"
    )


def _subscriptions_upsert(cursor: CursorWrapper, job: ImportJob, now: Any) -> None:
    on_conflict = "DO NOTHING"
    if job.resubscribe:
        on_conflict = (
            f"DO UPDATE SET status = '{_SUBSCRIBED}', updated_at = excluded.updated_at, "
            "source_import_id = excluded.source_import_id "
            f"WHERE {SUBSCRIPTIONS}.status <> '{_SUBSCRIBED}'"
        )
    cursor.execute(
        f"INSERT INTO {SUBSCRIPTIONS} (recipient_id, audience_id, status, "
        "source_import_id, created_at, updated_at) "
        f"SELECT r.id, %s, '{_SUBSCRIBED}', %s, %s, %s "
        f"FROM import_stage u JOIN {RECIPIENTS} r ON r.email = u.email "
        f"WHERE r.status = '{_ACTIVE}' ORDER BY r.id "
        f"ON CONFLICT (audience_id, recipient_id) {on_conflict}",
        [job.audience_id, job.pk, now, now],
    )
