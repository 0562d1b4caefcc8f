"""Read-side views of an import job for the admin: sample rows, progress, rejected rows."""

from __future__ import annotations

import csv
import io
from itertools import islice
from pathlib import Path
from typing import Any

from campaigns.models import ImportJob
from campaigns.services.imports.files import open_text
from campaigns.services.transitions import IMPORT_TRANSITIONS, is_final


def file_sample(*, job: ImportJob, rows: int) -> list[list[str]]:
    """The first rows after the header, to show next to the column mapping."""
    sample: list[list[str]] = []
    with open_text(Path(job.file.path), job.mapping["encoding"]) as text:
        reader = csv.reader(text, delimiter=job.mapping["delimiter"])
        try:
            next(reader, None)
            for row in islice(reader, rows):
                sample.append([cell[:80] for cell in row])
        except csv.Error:
            pass  # the mapping page still works; the run reports the problem with its line
    return sample


def import_job_progress(*, job: ImportJob) -> dict[str, Any]:
    job.refresh_from_db()
    total = max(job.total_rows, job.processed_rows)
    finished = is_final(IMPORT_TRANSITIONS, job.status)
    return {
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": finished,
        "processed_rows": job.processed_rows,
        "total_rows": total,
        # Full only when finished: the last stretch after reading is the database merge.
        "percent": 100 if finished else min(99, 100 * job.processed_rows // total if total else 0),
        "message": job.message,
        "counts": {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "skipped": job.skipped_count,
            "invalid": job.invalid_count,
        },
    }


def import_job_rejected_rows(*, job: ImportJob, limit: int) -> list[dict[str, str]]:
    """The first rejected rows of the report, to show on the job's page."""
    if not job.error_report:
        return []
    with job.error_report.open("rb") as handle:
        reader = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        return list(islice(reader, limit))
