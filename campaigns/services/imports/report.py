"""The report of rejected rows: a CSV in file order that the staff member downloads."""

from __future__ import annotations

import csv
import io
import tempfile

from django.core.files import File
from django.db import connection

from campaigns.models import ImportJob
from campaigns.resources import escape_formula

REPORT_HEADER = ["line", "email", "outcome", "reason"]


def report_write(job: ImportJob) -> None:
    """Stores the staged rejects as the job's report, read back in pages so memory stays flat.

    Sets ``job.error_report``; the caller saves the job.
    """
    page = 10_000
    with connection.cursor() as cursor, tempfile.TemporaryFile("w+b") as tmp:
        cursor.execute("CREATE INDEX IF NOT EXISTS import_rejects_line ON import_rejects (line)")
        text = io.TextIOWrapper(tmp, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(REPORT_HEADER)
        last = -1
        while True:
            cursor.execute(
                "SELECT line, email, kind, reason FROM import_rejects WHERE line > %s "
                "ORDER BY line LIMIT %s",
                [last, page],
            )
            batch = cursor.fetchall()
            if not batch:
                break
            # The email cell holds whatever the file held: escape it like every export.
            writer.writerows((ln, escape_formula(em), k, r) for ln, em, k, r in batch)
            last = batch[-1][0]
        text.flush()
        text.detach()
        tmp.seek(0)
        job.error_report.save(f"import-{job.pk}-rejected-rows.csv", File(tmp), save=False)
