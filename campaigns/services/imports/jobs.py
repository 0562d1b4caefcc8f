"""The life of an ImportJob: create, start (now or on a worker), run, cancel, finish.

Every status change goes through transitions.import_job_move. A small file runs in the
request that starts it; a large one (or one sent to the background) on the imports queue.
Both run ``import_job_run``, so they reject, count, audit and report the same rows the same way.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from campaigns.models import Audience, AuditEntry, ImportJob
from campaigns.publishers import publish_import
from campaigns.services.audience_counts import audience_counts_changed
from campaigns.services.audiences import RESUBSCRIBE_PERMISSION, actor_may
from campaigns.services.audit import By, acting_user, audit_record
from campaigns.services.imports.base import (
    ImportCancelled,
    ImportCounts,
    ImportFileError,
    cancel_check,
)
from campaigns.services.imports.files import (
    file_inspect,
    file_size_check,
    mapping_guess,
    mapping_validate,
)
from campaigns.services.imports.merge import staged_merge
from campaigns.services.imports.report import report_write
from campaigns.services.imports.staging import Staging, file_stage
from campaigns.services.imports.workbook import is_workbook, workbook_to_csv
from campaigns.services.transitions import IMPORT_TRANSITIONS, import_job_move, is_final

logger = logging.getLogger(__name__)
Status = ImportJob.Status


def import_job_create(
    *,
    upload: File[Any],
    audience: Audience | None,
    created_by: By,
    resubscribe: bool = False,
    all_or_nothing: bool = False,
) -> ImportJob:
    """Stores the upload (a workbook as the CSV it converts to) and reads its shape; the job
    then waits for its column mapping. The stored file is the only copy any later step reads.

    Raises PermissionDenied when ``resubscribe`` is asked by someone who may not re-subscribe.
    """
    resubscribe_check(resubscribe=resubscribe, by=created_by)
    # Checked before storing, so an oversized upload never lands in media storage.
    file_size_check(upload.size or 0)
    name = Path(upload.name or "import.csv").name
    job = ImportJob(
        original_name=name[:255],
        audience=audience,
        resubscribe=resubscribe,
        all_or_nothing=all_or_nothing,
        created_by=acting_user(created_by),
    )
    _file_store(job, upload, name)
    try:
        shape = file_inspect(path=Path(job.file.path))
    except ImportFileError:
        job.file.delete(save=False)
        raise
    job.mapping = {
        "encoding": shape.encoding,
        "delimiter": shape.delimiter,
        "headers": shape.headers,
        "columns": mapping_guess(headers=shape.headers),
    }
    job.total_rows = shape.estimated_rows
    job.save()
    return job


def resubscribe_check(*, resubscribe: bool, by: By) -> None:
    """Re-subscribing overrides what people asked for: only with its own permission."""
    if resubscribe and not actor_may(by=by, permission=RESUBSCRIBE_PERMISSION):
        raise PermissionDenied("Re-subscribing opted-out addresses needs its own permission.")


def _file_store(job: ImportJob, upload: File[Any], name: str) -> None:
    if not is_workbook(name):
        job.file.save(name, upload, save=False)
        return
    with tempfile.TemporaryFile("w+b") as converted:
        upload.seek(0)
        workbook_to_csv(source=upload, target=converted)
        converted.seek(0)
        job.file.save(f"{Path(name).stem}.csv", File(converted), save=False)


def import_job_runs_in_background(*, job: ImportJob, background: bool) -> bool:
    """A file over the background thresholds (bytes, or rows) always goes to a worker; a
    smaller one when asked. ``total_rows`` counts line breaks, never fewer than the rows."""
    return (
        background
        or job.file.size > settings.OPSDASH_IMPORT_BACKGROUND_BYTES
        or job.total_rows > settings.OPSDASH_IMPORT_SYNC_MAX_ROWS
    )


def import_job_start(
    *,
    job: ImportJob,
    columns: list[str],
    by: By,
    background: bool = True,
    publish: Callable[[int], str] = publish_import,
) -> ImportJob:
    """Fixes the mapping, then runs the import now or hands it to a worker (after commit).

    Returns the job: finished when it ran now, pending with "Waiting for a worker" otherwise.
    """
    in_background = import_job_runs_in_background(job=job, background=background)
    with transaction.atomic():
        job = _job_map(job, columns, by)
        if in_background:
            job.message = "Waiting for a worker."
            job.save(update_fields=["message"])
            transaction.on_commit(lambda: _publish(job, publish))
    if in_background:
        return job
    return import_job_run(import_job_id=job.pk)


def _job_map(job: ImportJob, columns: list[str], by: By) -> ImportJob:
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status != Status.PENDING or job.task_id:
        raise ImportFileError("This import has already been started.")
    resubscribe_check(resubscribe=job.resubscribe, by=by)
    mapping_validate(headers=list(job.mapping.get("headers", [])), columns=columns)
    job.mapping = {**job.mapping, "columns": columns}
    job.save(update_fields=["mapping"])
    audit_record(
        action=AuditEntry.Action.IMPORT_STARTED,
        actor=by,
        import_job=job,
        changes={"file": job.original_name, "audience": job.audience_id, "columns": columns},
    )
    return job


def _publish(job: ImportJob, publish: Callable[[int], str]) -> None:
    task_id = publish(job.pk)
    ImportJob.objects.filter(pk=job.pk, task_id="").update(task_id=task_id)


def import_job_cancel(*, job: ImportJob, by: By) -> ImportJob:
    """A pending job stops at once; a running one stops at its next checkpoint, writing nothing."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if is_final(IMPORT_TRANSITIONS, job.status):
            raise ImportFileError(f"This import is {job.get_status_display().lower()} already.")
        moved = import_job_move(
            job_id=job.pk,
            to=Status.CANCELLED,
            only_if={"status": Status.PENDING},
            cancel_requested=True,
            finished_at=timezone.now(),
            message="Cancelled before it started; nothing was written.",
        )
        if not moved:  # running: its worker sees the request at the next checkpoint
            ImportJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        job.refresh_from_db()
        audit_record(
            action=AuditEntry.Action.IMPORT_CANCELLED,
            actor=by,
            import_job=job,
            changes={"status": job.status},
        )
    return job


def import_job_abandon(*, job_id: int, now: datetime, unstarted_for: timedelta) -> bool:
    """Marks an upload nobody started (left at the mapping page) abandoned; True if it moved.

    The move is conditional on the job still having no task and no start, so a job being
    started at this very moment is left alone. The caller deletes the file afterwards.
    """
    hours = int(unstarted_for.total_seconds() // 3600)
    return import_job_move(
        job_id=job_id,
        to=Status.ABANDONED,
        only_if={"task_id": "", "started_at__isnull": True},
        finished_at=now,
        message=f"Never started within {hours} hours of the upload; its file was deleted.",
    )


def import_job_run(*, import_job_id: int) -> ImportJob:
    """Runs one import to its end.

    1. Claim the job (a second delivery of the task finds it finished and does nothing).
    2. Stream the file into a staging table, rejecting invalid rows with their line and reason.
    3. With all-or-nothing and any invalid row, stop: nothing is written.
    4. Merge in one transaction: dedupe, skip suppressed addresses, upsert, subscribe, count.
    5. Write the report of rejected rows and record the outcome in the audit trail.
    """
    job = _job_claim(import_job_id)
    if job is None:
        return ImportJob.objects.get(pk=import_job_id)
    store = Staging.for_job(job)
    try:
        store.create()
        _job_execute(job, store)
    except ImportCancelled:
        _job_stop(job, Status.CANCELLED, "Cancelled; nothing was written.")
    except ImportFileError as exc:
        _job_stop(job, Status.FAILED, f"{exc} Nothing was written.")
    except (OperationalError, InterfaceError):
        # A lost database is an outage, not a broken file: the job stays running, nothing was
        # written (one transaction), and the task runs it again once the database is back.
        raise
    except Exception as exc:
        message = f"The import stopped on an unexpected error ({type(exc).__name__}); nothing "
        _job_stop(job, Status.FAILED, message + "was written.")
        raise
    finally:
        store.drop()
    job.refresh_from_db()
    return job


def _job_execute(job: ImportJob, store: Staging) -> None:
    started = time.monotonic()
    counts = file_stage(job, store, progress=lambda rows: _job_progress(job, rows))
    if job.all_or_nothing and counts.invalid:
        message = (
            f"{counts.invalid} invalid rows and all-or-nothing was chosen: nothing was written. "
            "The report lists every rejected row."
        )
        _job_finish(job, counts, status=Status.FAILED, message=message, store=store)
    else:
        with transaction.atomic():
            staged_merge(job=job, store=store, counts=counts)
            cancel_check(job)
            _job_finish(job, counts, status=Status.COMPLETED, message=counts.summary(), store=store)
            audience_counts_changed()  # the Audience list shows the new sizes at once
    logger.info("import %s: %s rows in %.1fs", job.pk, job.total_rows, time.monotonic() - started)


def _job_stop(job: ImportJob, status: str, message: str) -> None:
    """Ends a job that wrote nothing (cancelled, or failed on the file or an error)."""
    _job_finish(job, ImportCounts(), status=status, message=message, store=None)


def _job_claim(import_job_id: int) -> ImportJob | None:
    now = timezone.now()
    claimed = import_job_move(
        job_id=import_job_id,
        to=Status.RUNNING,
        only_if={"cancel_requested": False},
        started_at=now,
        message="Reading the file.",
    )
    if not claimed:
        # A job cancelled while its worker was lost would otherwise stay "running" forever.
        import_job_move(
            job_id=import_job_id,
            to=Status.CANCELLED,
            only_if={"status": Status.RUNNING, "cancel_requested": True},
            finished_at=now,
            message="Cancelled.",
        )
        return None
    return ImportJob.objects.select_related("audience", "created_by").get(pk=import_job_id)


def _job_finish(
    job: ImportJob, counts: ImportCounts, *, status: str, message: str, store: Staging | None
) -> None:
    """Final status, counts and report (when ``store`` holds rejects); the audit entry names
    who started the import."""
    fields: dict[str, Any] = {
        "message": message,
        "finished_at": timezone.now(),
        "created_count": counts.created,
        "updated_count": counts.updated,
        "unchanged_count": counts.unchanged,
        "skipped_count": counts.skipped,
        "invalid_count": counts.invalid,
    }
    if store is not None and store.rejects_total():
        report_write(job)
        fields["error_report"] = job.error_report.name
    if not import_job_move(job_id=job.pk, to=status, **fields):
        logger.warning("import %s could not become %s", job.pk, status)
    action = (
        AuditEntry.Action.IMPORT_CANCELLED
        if status == Status.CANCELLED
        else AuditEntry.Action.IMPORT_FINISHED
    )
    # A cancel was audited when it was asked for; the worker noticing it adds nothing new.
    finished = action == AuditEntry.Action.IMPORT_FINISHED
    if finished or not job.audit_entries.filter(action=action).exists():
        audit_record(
            action=action,
            actor=job.created_by,
            import_job=job,
            changes={"status": status, **counts.as_changes()},
        )
    if job.resubscribe and status == Status.COMPLETED:
        _resubscribed_record(job, counts)


def _resubscribed_record(job: ImportJob, counts: ImportCounts) -> None:
    """Who re-subscribed how many opted-out addresses, and which (the first ids)."""
    audit_record(
        action=AuditEntry.Action.RESUBSCRIBED,
        actor=job.created_by,
        import_job=job,
        changes={
            "resubscribed": counts.resubscribed,
            "recipient_ids": counts.resubscribed_ids,
            "audience": job.audience_id,
        },
    )


def _job_progress(job: ImportJob, processed: int) -> None:
    """Publishes progress and raises ImportCancelled when a cancel was requested meanwhile."""
    ImportJob.objects.filter(pk=job.pk).update(
        processed_rows=processed, total_rows=max(job.total_rows, processed)
    )
    cancel_check(job)
