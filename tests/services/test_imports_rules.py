"""The import rules on the one pipeline: real files, the real database, both run paths."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.core.files import File
from import_export.formats.base_formats import CSV
from pytest_django import Settings

from campaigns.models import AuditEntry, ImportJob, Recipient
from campaigns.resources import RecipientResource
from campaigns.services.imports import (
    ImportFileError,
    address_with_name,
    import_job_create,
    import_job_run,
    import_job_start,
    workbook,
)
from tests.factories import AudienceFactory, UserFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def create(path: Path, **options: Any) -> ImportJob:
    with path.open("rb") as handle:
        return import_job_create(
            upload=File(handle, name=path.name),
            audience=options.pop("audience", None),
            created_by=options.pop("by", None),
            **options,
        )


def run(path: Path, *, background: bool, **options: Any) -> ImportJob:
    """Maps with the guessed columns and runs now, or queued and then run as the worker would."""
    by = UserFactory.create()
    job = create(path, by=by, **options)
    job = import_job_start(
        job=job,
        columns=job.mapping["columns"],
        by=by,
        background=background,
        publish=lambda _pk: "task",
    )
    if background:
        assert job.status == ImportJob.Status.PENDING
        job = import_job_run(import_job_id=job.pk)
    return job


def report_rows(job: ImportJob) -> list[dict[str, str]]:
    if not job.error_report:
        return []
    with job.error_report.open("rb") as handle:
        return list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))


def outcome(job: ImportJob) -> tuple[Any, ...]:
    return (
        job.status,
        job.created_count,
        job.updated_count,
        job.unchanged_count,
        job.skipped_count,
        job.invalid_count,
        [(r["line"], r["outcome"], r["reason"]) for r in report_rows(job)],
        list(AuditEntry.objects.filter(import_job=job).order_by("id").values_list("action")),
    )


def reset() -> None:
    Recipient.objects.all().delete()


@pytest.mark.parametrize(
    "name", ["valid.csv", "cp1252.csv", "utf16.csv", "long_field.csv", "display_names.csv"]
)
def test_a_file_gets_the_same_counts_report_and_audit_now_and_in_the_background(
    name: str,
) -> None:
    audience = AudienceFactory.create()
    now = run(FIXTURES / name, background=False, audience=audience)
    stored_now = sorted(Recipient.objects.values_list("email", "first_name", "last_name"))
    reset()
    later = run(FIXTURES / name, background=True, audience=audience)

    assert now.task_id == "" and now.status == ImportJob.Status.COMPLETED, now.message
    assert outcome(now) == outcome(later)
    assert stored_now == sorted(Recipient.objects.values_list("email", "first_name", "last_name"))


def test_a_small_file_runs_at_once_and_a_large_one_is_always_queued(
    settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    job = run(FIXTURES / "valid.csv", background=False)
    assert job.status == ImportJob.Status.COMPLETED
    reset()
    settings.OPSDASH_IMPORT_BACKGROUND_BYTES = 100
    published: list[int] = []

    def publish(pk: int) -> str:
        published.append(pk)
        return "task"

    job = create(FIXTURES / "valid.csv")
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_start(
            job=job, columns=job.mapping["columns"], by=None, background=False, publish=publish
        )
    assert job.status == ImportJob.Status.PENDING and job.message == "Waiting for a worker."
    assert published == [job.pk]
    assert Recipient.objects.count() == 0


def test_one_invalid_row_does_not_block_the_file_and_names_its_line() -> None:
    job = run(FIXTURES / "valid.csv", background=False)

    assert job.status == ImportJob.Status.COMPLETED
    assert ("4", "invalid") in [(r["line"], r["outcome"]) for r in report_rows(job)]
    assert Recipient.objects.count() == 4


def test_in_file_duplicates_keep_the_first_row() -> None:
    run(FIXTURES / "valid.csv", background=False)
    ada = Recipient.objects.get(email="ada@example.com")
    assert (ada.last_name, ada.attributes["city"]) == ("Lovelace", "London")


def test_two_columns_of_the_same_name_refuse_the_file() -> None:
    with pytest.raises(ImportFileError, match="names these columns more than once: email"):
        create(FIXTURES / "same_name_columns.csv")
    assert ImportJob.objects.count() == 0


def test_a_mailchimp_export_maps_itself() -> None:
    job = create(FIXTURES / "mailchimp.csv")
    assert job.mapping["columns"][:4] == ["email", "first_name", "last_name", "attribute"]

    job = run(FIXTURES / "mailchimp.csv", background=False)
    mae = Recipient.objects.get(email="mae@example.com")
    assert (mae.first_name, mae.last_name, mae.attributes["Address"]) == (
        "Mae",
        "Jemison",
        "Chicago, IL",
    )
    assert job.created_count == 2


def test_a_name_longer_than_its_column_rejects_its_row() -> None:
    job = run(FIXTURES / "long_name.csv", background=False)

    assert sorted(Recipient.objects.values_list("email", flat=True)) == [
        "ada@example.com",
        "grace@example.com",
    ]
    assert [(r["line"], r["reason"]) for r in report_rows(job)] == [
        ("3", "a name is longer than 150 characters")
    ]


def test_an_address_with_a_display_name_is_the_address_and_offers_the_name() -> None:
    job = run(FIXTURES / "display_names.csv", background=False)

    names = {r.email: (r.first_name, r.last_name) for r in Recipient.objects.all()}
    assert names == {
        "jane@example.com": ("Jane", "Doe"),
        "bob@example.com": ("Robert", ""),  # the file's own cell wins
        "john@example.com": ("John", "Doe"),
    }
    [row] = report_rows(job)
    assert (row["line"], row["outcome"]) == ("5", "invalid")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane Doe <jane@example.com>", ("jane@example.com", "Jane", "Doe")),
        ("Mary Ann Smith <MARY@example.com>", ("mary@example.com", "Mary Ann", "Smith")),
        ("Prince <prince@example.com>", ("prince@example.com", "Prince", "")),
        ('"Doe, Jane" <jane@example.com>', ("jane@example.com", "Jane", "Doe")),
        ("<plain@example.com>", None),
        ("Jane <not-an-address>", None),
    ],
)
def test_address_with_name(raw: str, expected: tuple[str, str, str] | None) -> None:
    assert address_with_name(raw) == expected


def test_a_field_over_the_csv_limit_rejects_its_own_row_on_the_request_path() -> None:
    job = run(FIXTURES / "long_field.csv", background=False)

    assert job.status == ImportJob.Status.COMPLETED
    assert [(r["line"], r["reason"]) for r in report_rows(job)] == [
        ("3", "a field is longer than 131,072 characters")
    ]


def test_an_unclosed_quote_names_the_line_where_it_opens() -> None:
    job = run(FIXTURES / "unbalanced_quotes.csv", background=False)

    assert job.status == ImportJob.Status.FAILED
    assert job.message.startswith("Line 3: a quoted field is never closed")


def test_a_leading_tab_in_a_name_is_kept_and_the_export_escapes_it() -> None:
    run(FIXTURES / "leading_tab.csv", background=False)

    assert Recipient.objects.get(email="ada@example.com").first_name == "\tAda"
    rows = list(csv.DictReader(io.StringIO(CSV().export_data(RecipientResource().export()))))
    assert {r["email"]: r["first_name"] for r in rows}["ada@example.com"] == "'\tAda"


def workbook_write(path: Path, rows: list[list[Any]]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_an_excel_workbook_imports_through_the_same_pipeline(tmp_path: Path) -> None:
    path = workbook_write(
        tmp_path / "people.xlsx",
        [
            ["Email Address", "First Name", "Last Name", "Member id", None],
            ["ada@example.com", "Ada", "Lovelace", 42.0, None],
            [None, None, None, None, None],
            ["not-an-email", "Bad", "Row", 7, None],
            ["grace@example.com", "Grace", None, 43, None],
        ],
    )
    job = run(path, background=False)

    assert job.original_name == "people.xlsx" and job.file.name.endswith(".csv")
    assert job.status == ImportJob.Status.COMPLETED, job.message
    ada = Recipient.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.attributes) == ("Ada", {"Member id": "42"})
    assert [(r["line"], r["outcome"]) for r in report_rows(job)] == [("3", "invalid")]


def test_a_workbook_declaring_too_many_cells_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook, "MAX_CELLS", 1_000)
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = "email"
    sheet["J200"] = "x"  # the declared dimension becomes A1:J200, 2,000 cells
    book.save(tmp_path / "wide.xlsx")

    with pytest.raises(ImportFileError, match="declares 200 rows x 10 columns"):
        create(tmp_path / "wide.xlsx")
    assert ImportJob.objects.count() == 0


def test_a_file_named_xlsx_that_is_no_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("email\nada@example.com\n")
    with pytest.raises(ImportFileError, match="cannot be read as an Excel workbook"):
        create(path)


def test_a_1_5_kb_workbook_declaring_a_whole_sheet_is_refused_before_any_cell_is_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture is a hand-made workbook of two cells whose dimension claims A1:XFD1048576,
    about 17 billion cells: the sheet must be refused from that claim, never iterated."""
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    path = FIXTURES / "huge_dimension.xlsx"
    assert path.stat().st_size < 2048

    def no_cells(*_: object, **__: object) -> None:
        raise AssertionError("a cell was read")

    monkeypatch.setattr(ReadOnlyWorksheet, "_cells_by_row", no_cells)
    with pytest.raises(ImportFileError, match="declares 1,048,576 rows x 16,384 columns"):
        create(path)
    assert ImportJob.objects.count() == 0
    assert not any((Path(settings.MEDIA_ROOT)).rglob("*.csv"))


def test_more_rows_than_the_request_cap_always_go_to_the_background(
    settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    """A file small in bytes but long in rows is not imported in the web request."""
    settings.OPSDASH_IMPORT_SYNC_MAX_ROWS = 3
    published: list[int] = []

    def publish(pk: int) -> str:
        published.append(pk)
        return "task"

    job = create(FIXTURES / "valid.csv")  # six rows, a few hundred bytes
    assert job.file.size < settings.OPSDASH_IMPORT_BACKGROUND_BYTES
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_start(
            job=job,
            columns=job.mapping["columns"],
            by=None,
            background=False,
            publish=publish,
        )
    assert job.status == ImportJob.Status.PENDING and published == [job.pk]
    assert Recipient.objects.count() == 0

    settings.OPSDASH_IMPORT_SYNC_MAX_ROWS = 6
    job = run(FIXTURES / "valid.csv", background=False)
    assert job.status == ImportJob.Status.COMPLETED and job.task_id == ""


def test_a_workbook_whose_rows_are_numbered_past_excels_last_row_is_refused(
    tmp_path: Path,
) -> None:
    """Two real rows, the second numbered 10^12: the reader yields an empty row for every
    number skipped, so the converter must stop at Excel's last row instead of counting on."""
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["email"])
    sheet.append(["ada@example.com"])
    plain = tmp_path / "plain.xlsx"
    book.save(plain)
    crafted = tmp_path / "far_rows.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'r="2"', b'r="1000000000000"').replace(
                    b'r="A2"', b'r="A1000000000000"'
                )
            target.writestr(item, data)

    with pytest.raises(ImportFileError, match="past 1,048,576"):
        create(crafted)
    assert ImportJob.objects.count() == 0
