"""Retention of import files: uploads and rejected-row reports are personal data, kept only as
long as someone may still need them (docs/operations.md, "Retention").

The ImportJob rows stay (counts, who, when, the audit trail); only the files go.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from campaigns.models import ImportJob
from campaigns.services.imports.jobs import import_job_abandon
from campaigns.services.transitions import IMPORT_TRANSITIONS, is_final

PURGE_CHUNK = 500
_FINAL = [status for status in ImportJob.Status.values if is_final(IMPORT_TRANSITIONS, status)]


@dataclass
class PurgeCounts:
    files: int = 0
    reports: int = 0
    unstarted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def import_files_purge(
    *, older_than: timedelta, unstarted_after: timedelta, chunk: int = PURGE_CHUNK
) -> PurgeCounts:
    """Deletes the files of old imports; returns how many of each went.

    1. Fix both cutoffs once, so a job finishing during the purge is never touched.
    2. A job uploaded but never started (pending, never queued) before ``unstarted_after`` ago
       is marked abandoned by a conditional move, so one being started at this moment is left
       alone; then its file is deleted.
    3. A finished job (completed, failed, cancelled, abandoned) that finished before
       ``older_than`` ago loses its upload and its report: storage first, then the row's
       reference to it.
    Both walk the jobs in id-ordered chunks, so a run never holds many rows.
    """
    now = timezone.now()
    counts = PurgeCounts()
    unstarted = ImportJob.objects.filter(
        status=ImportJob.Status.PENDING,
        task_id="",
        started_at__isnull=True,
        created_at__lt=now - unstarted_after,
    )
    for jobs in _chunks(unstarted, chunk):
        for job in jobs:
            counts.unstarted += _unstarted_abandon(job, now, unstarted_after)
    finished = ImportJob.objects.filter(
        status__in=_FINAL, finished_at__lt=now - older_than
    ).exclude(file="", error_report="")
    for jobs in _chunks(finished, chunk):
        for job in jobs:
            files, reports = _files_delete(job)
            counts.files += files
            counts.reports += reports
    return counts


def _chunks(jobs: QuerySet[ImportJob], size: int) -> Iterator[list[ImportJob]]:
    last_id = 0
    ordered = jobs.order_by("id").only("id", "file", "error_report")
    while batch := list(ordered.filter(id__gt=last_id)[:size]):
        yield batch
        last_id = batch[-1].pk


def _unstarted_abandon(job: ImportJob, now: datetime, after: timedelta) -> int:
    if not import_job_abandon(job_id=job.pk, now=now, unstarted_for=after):
        return 0
    _files_delete(job)
    return 1


def _files_delete(job: ImportJob) -> tuple[int, int]:
    """Deletes the job's upload and report from storage, then forgets their names."""
    names = {"file": job.file.name or "", "error_report": job.error_report.name or ""}
    for name in names.values():
        if name:
            job.file.storage.delete(name)
    kept = Q(file=names["file"]) & Q(error_report=names["error_report"])
    ImportJob.objects.filter(kept, pk=job.pk).update(file="", error_report="")
    return int(bool(names["file"])), int(bool(names["error_report"]))
