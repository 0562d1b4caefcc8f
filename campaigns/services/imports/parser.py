"""The parser: one pass over the file, valid rows out for staging, rejected rows with reasons.

Every rule about a single row lives here (address syntax, name length, field size, width,
in-file duplicates), so a row is accepted or rejected the same way whatever the file's size.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from operator import itemgetter
from pathlib import Path
from typing import Any

from django.conf import settings

from campaigns.models import ImportJob, Recipient
from campaigns.services.audiences import InvalidEmail, normalise_email
from campaigns.services.imports.base import ImportFileError
from campaigns.services.imports.files import (
    TARGET_ATTRIBUTE,
    TARGET_EMAIL,
    TARGET_FIRST_NAME,
    TARGET_LAST_NAME,
    mapping_validate,
    open_text,
)

# The csv module refuses fields longer than this by default; a row with one is rejected with
# its own reason instead of the module's error aborting the whole file.
CSV_DEFAULT_FIELD_LIMIT = 131_072
EMAIL_MAX_LENGTH: int = Recipient._meta.get_field("email").max_length or 254
# Checked here rather than left to the database: SQLite stores an over-long name silently.
NAME_MAX_LENGTH: int = min(
    Recipient._meta.get_field("first_name").max_length or 150,
    Recipient._meta.get_field("last_name").max_length or 150,
)

# A strict subset of what Django's EmailValidator accepts (ASCII dot-atom local part, letter
# TLD). Nearly every real address matches, and matching it is ~20x cheaper than the full
# validator; anything else takes the full path (IDNA, quoted local parts, IP literals).
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)

Reject = tuple[int, str, str, str]  # line, email cell, reason, kind


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


def address_with_name(raw: str) -> tuple[str, str, str] | None:
    """``Jane Doe <jane@example.com>`` as (address, first name, last name); None otherwise."""
    if "<" not in raw or not raw.rstrip().endswith(">"):
        return None
    name, address = parseaddr(raw)
    if not name or not address:
        return None
    try:
        email = email_normalise(address)
    except InvalidEmail:
        return None
    if "," in name:  # "Doe, Jane": the family name first
        last, _, first = name.partition(",")
        return email, first.strip(), last.strip()
    first, _, last = name.strip().rpartition(" ")
    return (email, first, last) if first else (email, last, "")


@dataclass
class Columns:
    width: int
    email: int
    first_name: int | None
    last_name: int | None
    attributes: list[int]

    @staticmethod
    def from_mapping(mapping: dict[str, Any]) -> Columns:
        headers: list[str] = mapping["headers"]
        columns: list[str] = mapping["columns"]
        mapping_validate(headers=headers, columns=columns)

        def index(target: str) -> int | None:
            return columns.index(target) if target in columns else None

        return Columns(
            width=len(headers),
            email=columns.index(TARGET_EMAIL),
            first_name=index(TARGET_FIRST_NAME),
            last_name=index(TARGET_LAST_NAME),
            attributes=[i for i, c in enumerate(columns) if c == TARGET_ATTRIBUTE],
        )


class Parser:
    """Turns the file into valid staged rows and rejected rows, one pass, bounded memory."""

    def __init__(self, job: ImportJob) -> None:
        self.path = Path(job.file.path)
        self.encoding: str = job.mapping["encoding"]
        self.delimiter: str = job.mapping["delimiter"]
        self.columns = Columns.from_mapping(job.mapping)
        self.max_field: int = max(settings.OPSDASH_IMPORT_MAX_FIELD_CHARS, CSV_DEFAULT_FIELD_LIMIT)
        self.records = 0
        self.invalid = 0
        self.duplicates = 0
        self.overflow = False
        self.done = False
        self.rejects: list[Reject] = []

    def reject(self, line: int, email: str, reason: str) -> None:
        self.rejects.append((line, email[:EMAIL_MAX_LENGTH], reason, "invalid"))
        self.invalid += 1

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Yields (line, email, first name, last name, *attribute cells) per valid, new address.

        Invalid rows go to ``rejects`` with the line they start on; a repeated address goes
        there as a duplicate, so the first row of an address is the one imported. This loop
        runs once per row of a million-row file, so it stays flat: attribute cells are passed
        through untouched and become JSON in the database. Names lose surrounding spaces only:
        a leading tab is data (exports escape it), not layout.
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
        with open_text(self.path, self.encoding) as text:
            reader = csv.reader(text, delimiter=self.delimiter, strict=True)
            try:
                for header in reader:  # the header is the first line that is not blank
                    line = reader.line_num + 1
                    if any(cell.strip() for cell in header):
                        break
                for row in reader:
                    # ``line`` is where this record opened: a csv.Error raised while reading
                    # the next one names the line its unclosed quote opened on.
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
                    first = row[first_i].strip(" ") if first_i is not None else ""
                    last = row[last_i].strip(" ") if last_i is not None else ""
                    try:
                        email = email_normalise(row[email_i])
                    except InvalidEmail as exc:
                        named = address_with_name(row[email_i])
                        if named is None:
                            self.reject(start, row[email_i], str(exc))
                            continue
                        email, first, last = named[0], first or named[1], last or named[2]
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
