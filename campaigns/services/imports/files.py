"""Reading an uploaded file's shape (encoding, delimiter, header) and mapping its columns."""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

from campaigns.services.imports.base import ImportFileError, megabytes

# Where a column of the file goes. "attribute" keeps the value in Recipient.attributes under
# the column's header.
TARGET_EMAIL = "email"
TARGET_FIRST_NAME = "first_name"
TARGET_LAST_NAME = "last_name"
TARGET_ATTRIBUTE = "attribute"
TARGET_IGNORE = "ignore"
TARGETS = (TARGET_EMAIL, TARGET_FIRST_NAME, TARGET_LAST_NAME, TARGET_ATTRIBUTE, TARGET_IGNORE)

SAMPLE_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024
# Compared with underscores read as spaces, so "First_Name" and "first name" are one header.
# "email address", "first name" and "last name" are what a Mailchimp export writes.
_HEADER_ALIASES = {
    TARGET_EMAIL: {"email", "e-mail", "email address", "e-mail address", "mail", "emailaddress"},
    TARGET_FIRST_NAME: {"first name", "firstname", "given name", "forename"},
    TARGET_LAST_NAME: {"last name", "lastname", "surname", "family name"},
}


@dataclass(frozen=True)
class FileShape:
    encoding: str
    delimiter: str
    headers: list[str]
    estimated_rows: int


def file_encoding_detect(*, path: Path) -> str:
    """BOM first; then the whole file must decode as UTF-8, else it is Windows-1252.

    Decoding the whole file costs a fraction of a second per hundred megabytes and avoids the
    classic failure of guessing from a sample and meeting "é" in row 900,000.
    """
    with path.open("rb") as raw:
        head = raw.read(SAMPLE_BYTES)
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
                "file. Save it as CSV (or upload an .xlsx workbook) and try again."
            )
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunk = head
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = raw.read(READ_CHUNK)
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


def open_text(path: Path, encoding: str) -> IO[str]:
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
        while chunk := raw.read(READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith((b"\n", b"\n\x00")):
        lines += 1
    return max(lines - 1, 0)


def file_size_check(size: int) -> None:
    limit = settings.OPSDASH_IMPORT_MAX_BYTES
    if size > limit:
        raise ImportFileError(
            f"The file is {megabytes(size)}; the largest file an import accepts is "
            f"{megabytes(limit)}. Split it into smaller files."
        )


def file_inspect(*, path: Path) -> FileShape:
    """Encoding, delimiter and header of an uploaded file; ImportFileError when unusable."""
    size = path.stat().st_size
    file_size_check(size)
    if size == 0:
        raise ImportFileError("The file is empty.")
    encoding = file_encoding_detect(path=path)
    with open_text(path, encoding) as text:
        sample = text.read(SAMPLE_BYTES)
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


def _headers_read(path: Path, encoding: str, delimiter: str) -> list[str]:
    with open_text(path, encoding) as text:
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
    headers_check_unique(headers)
    if not has_rows:
        raise ImportFileError("The file has a header line but no rows.")
    return headers


def headers_check_unique(headers: list[str]) -> None:
    """Two columns of one name would leave it unclear which one a value came from."""
    lowered = [h.lower() for h in headers]
    duplicates = sorted({h for h in headers if lowered.count(h.lower()) > 1})
    if duplicates:
        raise ImportFileError(
            "The header names these columns more than once: "
            + ", ".join(duplicates)
            + ". Give every column its own name."
        )


def mapping_guess(*, headers: list[str]) -> list[str]:
    """A target per column: known names map to fields, every other column to an attribute."""
    targets: list[str] = []
    for header in headers:
        key = header.strip().lower().replace("_", " ")
        target = next(
            (
                name
                for name, aliases in _HEADER_ALIASES.items()
                if key in aliases and name not in targets
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
