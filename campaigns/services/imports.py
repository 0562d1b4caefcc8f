"""The CSV import pipeline for large files: inspect, map, stage, merge, report.

A file becomes an ImportJob. The staff member maps its columns; a worker on the ``imports``
queue then streams the file once into a per-connection staging table and merges it into
recipients and subscriptions with a few set-based statements in one transaction. So a file
that turns out to be malformed half-way, a cancel, or an all-or-nothing import with invalid
rows leaves the recipients exactly as they were.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files import File
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from campaigns.models import Audience, AuditEntry, ImportJob, Recipient, Subscription
from campaigns.resources import escape_formula
from campaigns.services.audiences import InvalidEmail, normalise_email
from campaigns.services.audit import audit_record

Actor = AbstractBaseUser | AnonymousUser | None
logger = logging.getLogger(__name__)

# Where a column of the file goes. "attribute" keeps the value in Recipient.attributes under
# the column's header.
TARGET_EMAIL = "email"
TARGET_FIRST_NAME = "first_name"
TARGET_LAST_NAME = "last_name"
TARGET_ATTRIBUTE = "attribute"
TARGET_IGNORE = "ignore"
TARGETS = (TARGET_EMAIL, TARGET_FIRST_NAME, TARGET_LAST_NAME, TARGET_ATTRIBUTE, TARGET_IGNORE)

# The csv module refuses fields longer than this by default; a row with one is rejected with
# its own reason instead of the module's error aborting the whole file.
CSV_DEFAULT_FIELD_LIMIT = 131_072
EMAIL_MAX_LENGTH = 254  # Recipient.email's column
NAME_MAX_LENGTH = 150

_SAMPLE_BYTES = 64 * 1024
_READ_CHUNK = 1024 * 1024
_HEADER_ALIASES = {
    TARGET_EMAIL: {"email", "e-mail", "email address", "e-mail address", "mail", "emailaddress"},
    TARGET_FIRST_NAME: {"first_name", "first name", "firstname", "given name", "forename"},
    TARGET_LAST_NAME: {"last_name", "last name", "lastname", "surname", "family name"},
}
# Resubscribe re-activates these; a spam complaint always needs a person's individual decision.
_RESUBSCRIBABLE = (Recipient.Status.UNSUBSCRIBED, Recipient.Status.BOUNCED)
_SUPPRESSED = (*_RESUBSCRIBABLE, Recipient.Status.COMPLAINED)
_FINISHED = (ImportJob.Status.COMPLETED, ImportJob.Status.FAILED, ImportJob.Status.CANCELLED)


class ImportFileError(ValueError):
    """The file cannot be imported as a whole; the message is shown to the staff member."""


class ImportCancelled(Exception):
    pass


@dataclass(frozen=True)
class FileShape:
    encoding: str
    delimiter: str
    headers: list[str]
    estimated_rows: int


@dataclass
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    invalid: int = 0
    # Set when the file had more addresses than the parser dedupes in memory.
    needs_dedupe: bool = False


# --- Reading the file -----------------------------------------------------------------------


def file_encoding_detect(*, path: Path) -> str:
    """BOM first; then the whole file must decode as UTF-8, else it is Windows-1252.

    Decoding the whole file costs a fraction of a second per hundred megabytes and avoids the
    classic failure of guessing from a sample and meeting "é" in row 900,000.
    """
    with path.open("rb") as raw:
        head = raw.read(_SAMPLE_BYTES)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        utf16 = _utf16_without_bom(head)
        if utf16:
            return utf16
        if b"\x00" in head:
            raise ImportFileError(
                "This looks like a binary file (a spreadsheet or an archive?), not a CSV text "
                "file. Save it as CSV and upload it again."
            )
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunk = head
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = raw.read(_READ_CHUNK)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8"


def _utf16_without_bom(head: bytes) -> str | None:
    """ASCII text in UTF-16 has a zero in every other byte; nothing else looks like that."""
    sample = head[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _open_text(path: Path, encoding: str) -> IO[str]:
    # newline="" lets the csv module handle \r\n, \n and \r (even mixed) and quoted newlines.
    # Undefined cp1252 bytes become U+FFFD rather than failing a file that is otherwise fine.
    errors = "replace" if encoding == "cp1252" else "strict"
    return path.open(encoding=encoding, errors=errors, newline="")


def _delimiter_sniff(sample: str) -> str:
    first_lines = "\n".join(sample.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(first_lines, delimiters=",;\t|").delimiter
    except csv.Error:
        # One column, or too little text to tell: count the candidates in the header.
        header = first_lines.split("\n", 1)[0]
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _estimate_rows(path: Path) -> int:
    """Line breaks in the file, minus the header: exact unless fields hold newlines."""
    lines = 0
    last = b""
    with path.open("rb") as raw:
        while chunk := raw.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith((b"\n", b"\n\x00")):
        lines += 1
    return max(lines - 1, 0)


def file_inspect(*, path: Path) -> FileShape:
    """Encoding, delimiter and header of an uploaded file; ImportFileError when unusable."""
    size = path.stat().st_size
    limit = settings.OPSDASH_IMPORT_MAX_BYTES
    if size > limit:
        raise ImportFileError(
            f"The file is {_megabytes(size)}; the largest file an import accepts is "
            f"{_megabytes(limit)}. Split it into smaller files."
        )
    if size == 0:
        raise ImportFileError("The file is empty.")
    encoding = file_encoding_detect(path=path)
    with _open_text(path, encoding) as text:
        sample = text.read(_SAMPLE_BYTES)
    if not sample.strip():
        raise ImportFileError("The file is empty.")
    delimiter = _delimiter_sniff(sample)
    headers = _headers_read(path, encoding, delimiter)
    return FileShape(
        encoding=encoding,
        delimiter=delimiter,
        headers=headers,
        estimated_rows=_estimate_rows(path),
    )


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KB"
    return f"{size / (1024 * 1024):,.1f} MB"


def _headers_read(path: Path, encoding: str, delimiter: str) -> list[str]:
    with _open_text(path, encoding) as text:
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)  # blank lines before the header
            has_rows = header is not None and next(reader, None) is not None
        except csv.Error as exc:
            raise ImportFileError(f"The header line cannot be read: {exc}.") from exc
    if header is None:
        raise ImportFileError("The file is empty.")
    headers = [cell.strip() or f"column {i}" for i, cell in enumerate(header, start=1)]
    duplicates = sorted({h for h in headers if [x.lower() for x in headers].count(h.lower()) > 1})
    if duplicates:
        raise ImportFileError(
            "The header names these columns more than once: "
            + ", ".join(duplicates)
            + ". Give every column its own name."
        )
    if not has_rows:
        raise ImportFileError("The file has a header line but no rows.")
    return headers


def mapping_guess(*, headers: list[str]) -> list[str]:
    """A target per column: known names map to fields, every other column to an attribute."""
    targets: list[str] = []
    for header in headers:
        key = header.strip().lower().replace("_", " ")
        target = next(
            (
                name
                for name, aliases in _HEADER_ALIASES.items()
                if key in {a.replace("_", " ") for a in aliases} and name not in targets
            ),
            TARGET_ATTRIBUTE,
        )
        targets.append(target)
    return targets


def mapping_validate(*, headers: list[str], columns: list[str]) -> None:
    if len(columns) != len(headers) or any(c not in TARGETS for c in columns):
        raise ImportFileError("Choose a target for every column.")
    if columns.count(TARGET_EMAIL) != 1:
        raise ImportFileError(
            "Exactly one column must be the email address "
            f"(this file has {columns.count(TARGET_EMAIL)}). Columns: {', '.join(headers)}."
        )
    for target in (TARGET_FIRST_NAME, TARGET_LAST_NAME):
        if columns.count(target) > 1:
            raise ImportFileError(f"Only one column can be the {target.replace('_', ' ')}.")


# --- Addresses ------------------------------------------------------------------------------

# A strict subset of what Django's EmailValidator accepts (ASCII dot-atom local part, letter
# TLD). Nearly every real address matches, and matching it is ~20x cheaper than the full
# validator; anything else takes the full path (IDNA, quoted local parts, IP literals).
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def email_normalise(raw: str) -> str:
    """Same result as audiences.normalise_email, plus the column's length limit."""
    value = raw.strip().lower()
    if len(value) <= EMAIL_MAX_LENGTH and value.isascii() and _SIMPLE_EMAIL.fullmatch(value):
        return value
    if not value:
        raise InvalidEmail("the email address is empty")
    email = normalise_email(raw)
    if len(email) > EMAIL_MAX_LENGTH:
        raise InvalidEmail(f"the email address is longer than {EMAIL_MAX_LENGTH} characters")
    return email


# --- Jobs -----------------------------------------------------------------------------------


def import_job_create(
    *,
    upload: File[Any],
    audience: Audience | None,
    created_by: Actor,
    resubscribe: bool = False,
    all_or_nothing: bool = False,
) -> ImportJob:
    """Stores the upload and reads its shape; the job waits for its column mapping."""
    size = upload.size or 0
    if size > settings.OPSDASH_IMPORT_MAX_BYTES:
        # Checked before storing, so an oversized upload never lands in media storage.
        raise ImportFileError(
            f"The file is {_megabytes(size)}; the largest file an import accepts is "
            f"{_megabytes(settings.OPSDASH_IMPORT_MAX_BYTES)}. Split it into smaller files."
        )
    name = Path(upload.name or "import.csv").name
    job = ImportJob(
        original_name=name[:255],
        audience=audience,
        resubscribe=resubscribe,
        all_or_nothing=all_or_nothing,
        created_by=created_by if created_by and created_by.is_authenticated else None,  # type: ignore[misc]
    )
    job.file.save(name, upload, save=False)
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


def import_job_start(
    *,
    job: ImportJob,
    columns: list[str],
    by: Actor,
    publish: Callable[[int], str],
) -> ImportJob:
    """Fixes the mapping and hands the job to a worker (after commit)."""
    if job.status != ImportJob.Status.PENDING or job.task_id:
        raise ImportFileError("This import has already been started.")
    mapping_validate(headers=list(job.mapping.get("headers", [])), columns=columns)
    job.mapping = {**job.mapping, "columns": columns}
    job.message = "Waiting for a worker."
    job.save(update_fields=["mapping", "message"])
    audit_record(
        action=AuditEntry.Action.IMPORT_STARTED,
        actor=by,
        import_job=job,
        changes={"file": job.original_name, "audience": job.audience_id, "columns": columns},
    )
    transaction.on_commit(lambda: _publish(job, publish))
    return job


def _publish(job: ImportJob, publish: Callable[[int], str]) -> None:
    task_id = publish(job.pk)
    ImportJob.objects.filter(pk=job.pk, task_id="").update(task_id=task_id)


def import_job_cancel(*, job: ImportJob, by: Actor) -> ImportJob:
    """A pending job stops at once; a running one stops at its next checkpoint, writing nothing."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.status in _FINISHED:
            raise ImportFileError(f"This import is {job.get_status_display().lower()} already.")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == ImportJob.Status.PENDING:
            job.status = ImportJob.Status.CANCELLED
            job.finished_at = timezone.now()
            job.message = "Cancelled before it started; nothing was written."
            fields += ["status", "finished_at", "message"]
        job.save(update_fields=fields)
        audit_record(
            action=AuditEntry.Action.IMPORT_CANCELLED,
            actor=by,
            import_job=job,
            changes={"status": job.status},
        )
    return job


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
    store = _Staging.for_job(job)
    try:
        store.create()
        _job_execute(job, store)
    except ImportCancelled:
        _job_stop(job, store, ImportJob.Status.CANCELLED, "Cancelled; nothing was written.")
    except ImportFileError as exc:
        _job_stop(job, store, ImportJob.Status.FAILED, f"{exc} Nothing was written.")
    except Exception as exc:
        message = f"The import stopped on an unexpected error ({type(exc).__name__}); nothing "
        _job_stop(job, store, ImportJob.Status.FAILED, message + "was written.")
        raise
    finally:
        store.drop()
    job.refresh_from_db()
    return job


def _job_execute(job: ImportJob, store: _Staging) -> None:
    started = time.monotonic()
    counts = _stage_file(job, store)
    if job.all_or_nothing and counts.invalid:
        message = (
            f"{counts.invalid} invalid rows and all-or-nothing was chosen: nothing was written. "
            "The report lists every rejected row."
        )
        _job_finish(job, store, counts, status=ImportJob.Status.FAILED, message=message)
    else:
        _job_merge(job, store, counts)
    logger.info("import %s: %s rows in %.1fs", job.pk, job.total_rows, time.monotonic() - started)


def _job_stop(job: ImportJob, store: _Staging, status: str, message: str) -> None:
    """Ends a job that wrote nothing (cancelled, or failed on the file or an error)."""
    _job_finish(job, store, ImportCounts(), status=status, message=message, report=False)


def _job_claim(import_job_id: int) -> ImportJob | None:
    now = timezone.now()
    claimed = ImportJob.objects.filter(
        pk=import_job_id,
        status__in=[ImportJob.Status.PENDING, ImportJob.Status.RUNNING],
        cancel_requested=False,
    ).update(status=ImportJob.Status.RUNNING, started_at=now, message="Reading the file.")
    if not claimed:
        # A job cancelled while its worker was lost would otherwise stay "running" forever.
        ImportJob.objects.filter(
            pk=import_job_id, status=ImportJob.Status.RUNNING, cancel_requested=True
        ).update(status=ImportJob.Status.CANCELLED, finished_at=now, message="Cancelled.")
        return None
    return ImportJob.objects.select_related("audience", "created_by").get(pk=import_job_id)


def _job_finish(
    job: ImportJob,
    store: _Staging,
    counts: ImportCounts,
    *,
    status: str,
    message: str,
    report: bool = True,
) -> None:
    """Final status, counts and report; the audit entry names who started the import."""
    job.status = status
    job.message = message
    job.finished_at = timezone.now()
    job.created_count = counts.created
    job.updated_count = counts.updated
    job.unchanged_count = counts.unchanged
    job.skipped_count = counts.skipped
    job.invalid_count = counts.invalid
    fields = [
        "status", "message", "finished_at", "created_count", "updated_count",
        "unchanged_count", "skipped_count", "invalid_count",
    ]  # fmt: skip
    if report and store.rejects_total():
        _report_write(job, store)
        fields.append("error_report")
    job.save(update_fields=fields)
    action = (
        AuditEntry.Action.IMPORT_CANCELLED
        if status == ImportJob.Status.CANCELLED
        else AuditEntry.Action.IMPORT_FINISHED
    )
    if action == "import_finished" or not job.audit_entries.filter(action=action).exists():
        audit_record(
            action=action,
            actor=job.created_by,
            import_job=job,
            changes={
                "status": status,
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "skipped": counts.skipped,
                "invalid": counts.invalid,
            },
        )


def _job_progress(job: ImportJob, processed: int) -> None:
    """Publishes progress and raises ImportCancelled when a cancel was requested meanwhile."""
    ImportJob.objects.filter(pk=job.pk).update(
        processed_rows=processed, total_rows=max(job.total_rows, processed)
    )
    if ImportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise ImportCancelled


# --- Staging --------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    """A header name (the file's own text) as an SQL string literal in a statement with params."""
    return "'" + value.replace("\x00", "").replace("'", "''").replace("%", "%%") + "'"


class _Staging:
    """Temporary tables on the current connection: the file's valid rows and its rejected rows.

    import_stage holds each address once (the parser drops later duplicates) with the
    attribute columns as they are; the merge turns those into JSON. PostgreSQL loads it with
    COPY, SQLite (the embedded profile) with executemany.
    """

    empty_json = "'{}'"

    def __init__(self, attribute_keys: list[str]) -> None:
        self.keys = attribute_keys
        self.columns = [f"a{i}" for i in range(len(attribute_keys))]

    @staticmethod
    def for_job(job: ImportJob) -> _Staging:
        mapping = job.mapping
        keys = [
            h
            for h, c in zip(mapping.get("headers", []), mapping.get("columns", []), strict=False)
            if c == TARGET_ATTRIBUTE
        ]
        return (_PostgresStaging if connection.vendor == "postgresql" else _Staging)(keys)

    def create(self) -> None:
        self.drop()
        extra = "".join(f", {c} text" for c in self.columns)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE import_stage (line integer, email text, "
                f"first_name text, last_name text{extra})"
            )
            cursor.execute(
                "CREATE TEMPORARY TABLE import_rejects (line integer, email text, "
                "reason text, kind text)"
            )

    def drop(self) -> None:
        with connection.cursor() as cursor:
            for table in ("import_stage", "import_rejects"):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def load(self, rows: Iterator[tuple[Any, ...]]) -> None:
        marks = ", ".join(["%s"] * (4 + len(self.columns)))
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO import_stage VALUES ({marks})", list(rows))

    def reject(self, rows: list[tuple[int, str, str, str]]) -> None:
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO import_rejects VALUES (%s, %s, %s, %s)", rows)

    def rejects_total(self) -> int:
        with connection.cursor() as cursor:
            try:
                cursor.execute("SELECT count(*) FROM import_rejects")
            except DatabaseError:  # the table is gone after a failed transaction
                return 0
            return int(cursor.fetchone()[0])

    def prepare(self, cursor: CursorWrapper) -> None:
        """Settings and indexes for the merge statements."""
        cursor.execute("CREATE INDEX import_stage_email ON import_stage (email)")

    def attributes(self) -> str:
        """SQL for a staged row's attributes as JSON, blank cells left out."""
        expr = self.empty_json
        for group in self._pairs():
            expr = f"json_patch({expr}, json_object({group}))"  # json_patch drops the nulls
        return expr

    def _pairs(self) -> Iterator[str]:
        # Both databases cap a function's arguments (SQLite 127, PostgreSQL 100).
        pairs = [
            f"{_sql_text(k)}, NULLIF(trim(u.{c}), '')"
            for k, c in zip(self.keys, self.columns, strict=True)
        ]
        for start in range(0, len(pairs), 40):
            yield ", ".join(pairs[start : start + 40])

    # Expressions that differ between the two databases.
    def attributes_changed(self, table: str, new: str) -> str:
        return f"json_patch({table}.attributes, {new}) <> json({table}.attributes)"

    def attributes_merged(self, table: str, new: str) -> str:
        return f"json_patch({table}.attributes, {new})"


class _PostgresStaging(_Staging):
    empty_json = "'{}'::jsonb"

    def create(self) -> None:
        # The staging tables hold the whole file: keep them in memory rather than in temp
        # files. Only possible before the session first touches a temporary table.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET temp_buffers = '{settings.OPSDASH_IMPORT_TEMP_BUFFERS}'")
        except DatabaseError:
            pass  # this connection ran an import before and keeps its earlier setting
        super().create()

    def load(self, rows: Iterator[tuple[Any, ...]]) -> None:
        # COPY streams while the rows are parsed, so PostgreSQL works on the other core.
        names = ", ".join(["line", "email", "first_name", "last_name", *self.columns])
        sql = f"COPY import_stage ({names}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def reject(self, rows: list[tuple[int, str, str, str]]) -> None:
        if rows:
            sql = "COPY import_rejects (line, email, reason, kind) FROM STDIN"
            with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)

    def prepare(self, cursor: CursorWrapper) -> None:
        # Sorting and hashing a million rows fits in memory with this, not in 4 MB.
        cursor.execute(f"SET LOCAL work_mem = '{settings.OPSDASH_IMPORT_WORK_MEM}'")
        # Foreign keys are DEFERRABLE INITIALLY DEFERRED: queueing a million checks until the
        # commit costs more than running each one when its statement ends.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ANALYZE import_stage")  # temporary tables have no statistics otherwise

    def attributes(self) -> str:
        groups = [f"jsonb_build_object({group})" for group in self._pairs()]
        if not groups:
            return self.empty_json
        return f"jsonb_strip_nulls({' || '.join(groups)})"

    def attributes_changed(self, table: str, new: str) -> str:
        return f"({table}.attributes || {new}) <> {table}.attributes"

    def attributes_merged(self, table: str, new: str) -> str:
        return f"{table}.attributes || {new}"


@dataclass
class _Columns:
    width: int
    email: int
    first_name: int | None
    last_name: int | None
    attributes: list[int]

    @staticmethod
    def from_mapping(mapping: dict[str, Any]) -> _Columns:
        headers: list[str] = mapping["headers"]
        columns: list[str] = mapping["columns"]
        mapping_validate(headers=headers, columns=columns)

        def index(target: str) -> int | None:
            return columns.index(target) if target in columns else None

        return _Columns(
            width=len(headers),
            email=columns.index(TARGET_EMAIL),
            first_name=index(TARGET_FIRST_NAME),
            last_name=index(TARGET_LAST_NAME),
            attributes=[i for i, c in enumerate(columns) if c == TARGET_ATTRIBUTE],
        )


def _stage_file(job: ImportJob, store: _Staging) -> ImportCounts:
    """Streams the file into import_stage in chunks, checking for a cancel between chunks."""
    parser = _Parser(job)
    rows = parser.rows()
    chunk_size = settings.OPSDASH_IMPORT_CHUNK_ROWS
    while not parser.done:
        # A chunk is its own transaction (a savepoint inside one), so a file error raised
        # in the middle of a COPY leaves the connection usable for recording the failure.
        with transaction.atomic():
            store.load(islice(rows, chunk_size))
            store.reject(parser.rejects)
        parser.rejects.clear()
        _job_progress(job, parser.records)
    ImportJob.objects.filter(pk=job.pk).update(
        total_rows=parser.records, processed_rows=parser.records, message="Writing to the database."
    )
    job.total_rows = job.processed_rows = parser.records
    return ImportCounts(
        invalid=parser.invalid, skipped=parser.duplicates, needs_dedupe=parser.overflow
    )


class _Parser:
    """Turns the file into valid staged rows and rejected rows, one pass, bounded memory."""

    def __init__(self, job: ImportJob) -> None:
        self.path = Path(job.file.path)
        self.encoding: str = job.mapping["encoding"]
        self.delimiter: str = job.mapping["delimiter"]
        self.columns = _Columns.from_mapping(job.mapping)
        self.max_field: int = max(settings.OPSDASH_IMPORT_MAX_FIELD_CHARS, CSV_DEFAULT_FIELD_LIMIT)
        self.records = 0
        self.invalid = 0
        self.duplicates = 0
        self.overflow = False
        self.done = False
        self.rejects: list[tuple[int, str, str, str]] = []

    def reject(self, line: int, email: str, reason: str) -> None:
        self.rejects.append((line, email[:EMAIL_MAX_LENGTH], reason, "invalid"))
        self.invalid += 1

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Yields (line, email, first name, last name, *attribute cells) per valid, new address.

        Invalid rows go to ``rejects`` with the line they start on; a repeated address goes
        there as a duplicate. This loop runs once per row of a million-row file, so it stays
        flat: attribute cells are passed through untouched and become JSON in the database.
        """
        # Fields past the csv default are read so the row can be rejected with a clear reason;
        # past max_field the file itself is refused (usually a quote that never closes).
        csv.field_size_limit(self.max_field)
        cols = self.columns
        width, email_i, first_i, last_i = cols.width, cols.email, cols.first_name, cols.last_name
        pick = _picker(cols.attributes)
        # The addresses seen so far, ~110 bytes each; past the limit the database dedupes the
        # rest at merge time (slower, but memory stays bounded for any file size).
        seen: set[str] = set()
        seen_limit = settings.OPSDASH_IMPORT_DEDUPE_IN_MEMORY
        limit = CSV_DEFAULT_FIELD_LIMIT
        line = 1
        with _open_text(self.path, self.encoding) as text:
            reader = csv.reader(text, delimiter=self.delimiter, strict=True)
            try:
                for header in reader:  # the header is the first line that is not blank
                    line = reader.line_num + 1
                    if any(cell.strip() for cell in header):
                        break
                for row in reader:
                    start, line = line, reader.line_num + 1
                    if len(row) != width:
                        if not row or (len(row) == 1 and not row[0].strip()):
                            continue  # a blank line is no record
                        self.records += 1
                        email_raw = row[email_i] if len(row) > email_i else ""
                        reason = f"the row has {len(row)} fields; the header has {width}"
                        self.reject(start, email_raw, reason)
                        continue
                    self.records += 1
                    try:
                        email = email_normalise(row[email_i])
                    except InvalidEmail as exc:
                        self.reject(start, row[email_i], str(exc))
                        continue
                    first = row[first_i].strip() if first_i is not None else ""
                    last = row[last_i].strip() if last_i is not None else ""
                    if len(first) > NAME_MAX_LENGTH or len(last) > NAME_MAX_LENGTH:
                        reason = f"a name is longer than {NAME_MAX_LENGTH} characters"
                        self.reject(start, email, reason)
                        continue
                    if max(map(len, row)) > limit:
                        self.reject(start, email, f"a field is longer than {limit:,} characters")
                        continue
                    if email in seen:
                        self.rejects.append((start, email, "duplicate", "duplicate"))
                        self.duplicates += 1
                        continue
                    if len(seen) < seen_limit:
                        seen.add(email)
                    else:
                        self.overflow = True
                    yield (start, email, first, last, *pick(row))
            except csv.Error as exc:
                raise ImportFileError(_csv_error_message(exc, line, self.max_field)) from exc
            except UnicodeDecodeError as exc:
                message = f"Line {line}: the text is not valid {self.encoding}."
                raise ImportFileError(message) from exc
        self.done = True


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    if not indexes:
        return lambda row: ()
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    return itemgetter(*indexes)


def _csv_error_message(exc: csv.Error, line: int, max_field: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (
            f"Line {line}: a field is longer than {max_field:,} characters. This usually means "
            "a quote that is never closed."
        )
    if "unexpected end of data" in text or "EOF" in text:
        return f"Line {line}: a quoted field is never closed (unbalanced quotes)."
    if "expected after" in text:
        return f"Line {line}: a quote closes in the middle of a field (unbalanced quotes)."
    return f"Line {line}: the file cannot be read as CSV ({text})."


# --- Merging --------------------------------------------------------------------------------


def _in(values: tuple[str, ...]) -> str:
    # Status literals are our own TextChoices values, never user input.
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _job_merge(job: ImportJob, store: _Staging, counts: ImportCounts) -> None:
    """Classify, upsert and subscribe in one transaction, then finish the job in it."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
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
        _check_cancel(job)
        created, updated, existing = _classify(cursor, job, store)
        _recipients_upsert(cursor, job, store, now)
        _check_cancel(job)
        if job.audience_id:
            _subscriptions_upsert(cursor, job, now)
        counts.created, counts.updated = created, updated
        counts.unchanged = existing - updated
        counts.skipped += suppressed
        message = (
            f"Done: {created:,} created, {updated:,} updated, {counts.unchanged:,} unchanged, "
            f"{counts.skipped:,} skipped, {counts.invalid:,} invalid."
        )
        _check_cancel(job)
        _job_finish(job, store, counts, status=ImportJob.Status.COMPLETED, message=message)


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


def _check_cancel(job: ImportJob) -> None:
    if ImportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise ImportCancelled


def _eligible(table: str, resubscribe: bool) -> str:
    """Rows of ``table`` (a recipient) the import may change: suppression is respected."""
    if resubscribe:
        return f"{table}.status NOT IN ('{Recipient.Status.COMPLAINED}')"
    return f"{table}.status NOT IN {_in(_SUPPRESSED)}"


def _rejects_suppressed(cursor: CursorWrapper, job: ImportJob) -> int:
    statuses = (Recipient.Status.COMPLAINED,) if job.resubscribe else _SUPPRESSED
    cursor.execute(
        "INSERT INTO import_rejects (line, email, reason, kind) "
        "SELECT u.line, u.email, 'the address is ' || r.status || "
        f"'{'' if job.resubscribe else ' and resubscribe was not chosen'}', 'skipped' "
        "FROM import_stage u JOIN campaigns_recipient r ON r.email = u.email "
        f"WHERE r.status IN {_in(statuses)}"
    )
    return int(cursor.rowcount)


def _classify(cursor: CursorWrapper, job: ImportJob, store: _Staging) -> tuple[int, int, int]:
    """(new addresses, existing ones that change, existing ones the import may touch)."""
    changed = (
        f"(u.first_name <> '' AND u.first_name <> r.first_name) "
        f"OR (u.last_name <> '' AND u.last_name <> r.last_name) "
        f"OR {store.attributes_changed('r', store.attributes())} "
        f"OR r.status <> '{Recipient.Status.ACTIVE}'"
    )
    join_subscription = ""
    params: list[Any] = []
    if job.audience_id:
        join_subscription = (
            "LEFT JOIN campaigns_subscription s ON s.recipient_id = r.id AND s.audience_id = %s"
        )
        params.append(job.audience_id)
        changed += " OR s.id IS NULL"
        if job.resubscribe:
            changed += f" OR s.status <> '{Subscription.Status.SUBSCRIBED}'"
    eligible = _eligible("r", job.resubscribe)
    cursor.execute(
        "SELECT "
        "coalesce(sum(CASE WHEN r.id IS NULL THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN r.id IS NOT NULL AND {eligible} AND ({changed}) "
        "THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN r.id IS NOT NULL AND {eligible} THEN 1 ELSE 0 END), 0) "
        "FROM import_stage u LEFT JOIN campaigns_recipient r ON r.email = u.email "
        f"{join_subscription}",
        params,
    )
    created, updated, existing = cursor.fetchone()
    return int(created), int(updated), int(existing)


def _recipients_upsert(cursor: CursorWrapper, job: ImportJob, store: _Staging, now: Any) -> None:
    """New addresses are inserted; known ones get non-blank names and merged attributes.

    The WHERE of the update re-checks suppression, so an address that unsubscribed while the
    import ran is not re-activated by it.
    """
    t = "campaigns_recipient"
    active = Recipient.Status.ACTIVE
    cursor.execute(
        f"INSERT INTO {t} (email, first_name, last_name, attributes, status, created_at, "
        "updated_at) "
        f"SELECT u.email, u.first_name, u.last_name, {store.attributes()}, '{active}', %s, %s "
        "FROM import_stage u WHERE 1 = 1 ORDER BY u.email "
        "ON CONFLICT (email) DO UPDATE SET "
        f"first_name = CASE WHEN excluded.first_name <> '' THEN excluded.first_name "
        f"ELSE {t}.first_name END, "
        f"last_name = CASE WHEN excluded.last_name <> '' THEN excluded.last_name "
        f"ELSE {t}.last_name END, "
        f"attributes = {store.attributes_merged(t, 'excluded.attributes')}, "
        f"status = '{active}', updated_at = excluded.updated_at "
        f"WHERE {_eligible(t, job.resubscribe)} AND ("
        f"(excluded.first_name <> '' AND excluded.first_name <> {t}.first_name) "
        f"OR (excluded.last_name <> '' AND excluded.last_name <> {t}.last_name) "
        f"OR {store.attributes_changed(t, 'excluded.attributes')} OR {t}.status <> '{active}')",
        [now, now],
    )


def _subscriptions_upsert(cursor: CursorWrapper, job: ImportJob, now: Any) -> None:
    subscribed = Subscription.Status.SUBSCRIBED
    on_conflict = "DO NOTHING"
    if job.resubscribe:
        on_conflict = (
            f"DO UPDATE SET status = '{subscribed}', updated_at = excluded.updated_at, "
            "source_import_id = excluded.source_import_id "
            f"WHERE campaigns_subscription.status <> '{subscribed}'"
        )
    cursor.execute(
        "INSERT INTO campaigns_subscription (recipient_id, audience_id, status, "
        "source_import_id, created_at, updated_at) "
        f"SELECT r.id, %s, '{subscribed}', %s, %s, %s "
        "FROM import_stage u JOIN campaigns_recipient r ON r.email = u.email "
        f"WHERE r.status = '{Recipient.Status.ACTIVE}' ORDER BY r.id "
        f"ON CONFLICT (audience_id, recipient_id) {on_conflict}",
        [job.audience_id, job.pk, now, now],
    )


# --- Report ---------------------------------------------------------------------------------


def _report_write(job: ImportJob, store: _Staging) -> None:
    """The rejected rows as CSV, in file order, read back in pages so memory stays flat."""
    page = 10_000
    with connection.cursor() as cursor, tempfile.TemporaryFile("w+b") as tmp:
        cursor.execute("CREATE INDEX IF NOT EXISTS import_rejects_line ON import_rejects (line)")
        text = io.TextIOWrapper(tmp, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(["line", "email", "outcome", "reason"])
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


# --- Reading a job for the admin ------------------------------------------------------------


def file_sample(*, job: ImportJob, rows: int) -> list[list[str]]:
    """The first rows after the header, to show next to the column mapping."""
    sample: list[list[str]] = []
    with _open_text(Path(job.file.path), job.mapping["encoding"]) as text:
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
    return {
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": job.status in _FINISHED,
        "processed_rows": job.processed_rows,
        "total_rows": total,
        # Full only when finished: the last stretch after reading is the database merge.
        "percent": 100
        if job.status in _FINISHED
        else min(99, 100 * job.processed_rows // total if total else 0),
        "message": job.message,
        "counts": {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "skipped": job.skipped_count,
            "invalid": job.invalid_count,
        },
    }
