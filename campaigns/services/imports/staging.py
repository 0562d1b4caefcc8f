"""Staging per database: the file's valid and rejected rows in temporary tables.

import_stage holds each address once (the parser drops later duplicates) with the attribute
columns as they are; the merge turns those into JSON. PostgreSQL loads it with COPY, SQLite
(the embedded profile) with executemany. The tables live on the current connection only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper

from campaigns.models import ImportJob
from campaigns.services.imports.base import ImportCounts
from campaigns.services.imports.files import TARGET_ATTRIBUTE
from campaigns.services.imports.parser import Parser, Reject


def sql_text(value: str) -> str:
    """A header name (the file's own text) as an SQL string literal in a statement with params."""
    return "'" + value.replace("\x00", "").replace("'", "''").replace("%", "%%") + "'"


class Staging:
    """The SQLite staging tables, and the SQL expressions that differ between the databases."""

    empty_json = "'{}'"

    def __init__(self, attribute_keys: list[str]) -> None:
        self.keys = attribute_keys
        self.columns = [f"a{i}" for i in range(len(attribute_keys))]

    @staticmethod
    def for_job(job: ImportJob) -> Staging:
        mapping = job.mapping
        keys = [
            h
            for h, c in zip(mapping.get("headers", []), mapping.get("columns", []), strict=False)
            if c == TARGET_ATTRIBUTE
        ]
        return (PostgresStaging if connection.vendor == "postgresql" else Staging)(keys)

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

    def reject(self, rows: list[Reject]) -> None:
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
            f"{sql_text(k)}, NULLIF(trim(u.{c}), '')"
            for k, c in zip(self.keys, self.columns, strict=True)
        ]
        for start in range(0, len(pairs), 40):
            yield ", ".join(pairs[start : start + 40])

    def attributes_changed(self, table: str, new: str) -> str:
        return f"json_patch({table}.attributes, {new}) <> json({table}.attributes)"

    def attributes_merged(self, table: str, new: str) -> str:
        return f"json_patch({table}.attributes, {new})"


class PostgresStaging(Staging):
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

    def reject(self, rows: list[Reject]) -> None:
        if rows:
            sql = "COPY import_rejects (line, email, reason, kind) FROM STDIN"
            with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)

    def prepare(self, cursor: CursorWrapper) -> None:
        # Sorting and hashing a million rows fits in memory with this, not in 4 MB.
        cursor.execute(f"SET LOCAL work_mem = '{settings.OPSDASH_IMPORT_WORK_MEM}'")
        # Django creates foreign keys DEFERRABLE INITIALLY DEFERRED, so each subscription the
        # merge inserts would queue its three key checks until COMMIT, a million-entry queue
        # held in memory; IMMEDIATE checks them as each statement ends. Like SET LOCAL, it
        # lasts until the end of the merge's transaction.
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


def file_stage(job: ImportJob, store: Staging, progress: Callable[[int], None]) -> ImportCounts:
    """Streams the file into import_stage in chunks, reporting progress between chunks."""
    parser = Parser(job)
    rows = parser.rows()
    chunk_size = settings.OPSDASH_IMPORT_CHUNK_ROWS
    while not parser.done:
        # A chunk is its own transaction (a savepoint inside one), so a file error raised
        # in the middle of a COPY leaves the connection usable for recording the failure.
        with transaction.atomic():
            store.load(islice(rows, chunk_size))
            store.reject(parser.rejects)
        parser.rejects.clear()
        progress(parser.records)
    ImportJob.objects.filter(pk=job.pk).update(
        total_rows=parser.records, processed_rows=parser.records, message="Writing to the database."
    )
    job.total_rows = job.processed_rows = parser.records
    return ImportCounts(
        invalid=parser.invalid, skipped=parser.duplicates, needs_dedupe=parser.overflow
    )
