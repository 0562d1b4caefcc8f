"""Excel workbooks (.xlsx) become the CSV text the rest of the pipeline reads.

openpyxl in read-only mode streams the sheet's XML row by row, so memory stays bounded; the
declared size is checked before any cell is read, and the cells actually read are counted
too, because a workbook's declared dimension may be missing or wrong.
"""

from __future__ import annotations

import csv
import datetime
import io
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from openpyxl import load_workbook

from campaigns.services.imports.base import ImportFileError

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
# About a million rows of ten columns; beyond this, a CSV export is the better upload.
MAX_CELLS = 10_000_000
EXCEL_MAX_ROWS = 1_048_576


def is_workbook(name: str) -> bool:
    return name.lower().endswith(WORKBOOK_SUFFIXES)


def workbook_to_csv(*, source: IO[bytes], target: IO[bytes]) -> None:
    """Writes the first sheet of ``source`` as UTF-8 CSV to ``target``.

    1. Open the workbook read-only (values, not formulas) and refuse it if its declared
       rows x columns exceed MAX_CELLS.
    2. Forget the declared dimension (it can be wrong) and stream the rows, stopping at the cap.
    3. Write each non-blank row, cut or padded to the header's width where the cells are empty.
    """
    try:
        book = load_workbook(source, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ImportFileError("The file cannot be read as an Excel workbook (.xlsx).") from exc
    try:
        sheet = book.worksheets[0]
        _declared_size_check(sheet)
        sheet.reset_dimensions()
        text = io.TextIOWrapper(target, encoding="utf-8", newline="")
        csv.writer(text).writerows(_rows(sheet))
        text.flush()
        text.detach()
    finally:
        book.close()


def _declared_size_check(sheet: Any) -> None:
    rows, columns = sheet.max_row or 0, sheet.max_column or 0
    if rows * columns > MAX_CELLS:
        raise ImportFileError(
            f"The sheet declares {rows:,} rows x {columns:,} columns; a workbook import takes "
            f"up to {MAX_CELLS:,} cells. Save the sheet as CSV and upload that instead."
        )


def _rows(sheet: Any) -> Iterator[list[str]]:
    width = 0
    cells = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if number > EXCEL_MAX_ROWS:  # no spreadsheet writes rows past its own last one
            raise ImportFileError(
                f"The sheet has rows numbered past {EXCEL_MAX_ROWS:,}, Excel's last row. "
                "Save it as CSV and upload that."
            )
        row = [_text(value) for value in values]
        # A skipped row number comes back as an empty row: count it as a cell, or a workbook
        # whose second row is numbered 10^12 would keep this loop busy for days.
        cells += max(1, len(row))
        if cells > MAX_CELLS:
            raise ImportFileError(
                f"The sheet holds more than {MAX_CELLS:,} cells. Save it as CSV and upload that."
            )
        if not any(cell.strip() for cell in row):
            continue  # Excel keeps formatted but empty rows; they are no records
        if not width:
            width = _width(row)
        yield _fit(row, width)


def _width(header: list[str]) -> int:
    while header and not header[-1].strip():
        header = header[:-1]
    return len(header)


def _fit(row: list[str], width: int) -> list[str]:
    """Pads short rows; cuts empty trailing cells, keeping a row that really is too wide."""
    if len(row) < width:
        return row + [""] * (width - len(row))
    if len(row) > width and not any(cell.strip() for cell in row[width:]):
        return row[:width]
    return row


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone number or an id, not "42.0"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
