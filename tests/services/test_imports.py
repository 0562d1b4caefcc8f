"""The large-file import pipeline, through its services, with real files and the real database."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files import File
from django.db import OperationalError
from pytest_django import Settings

from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription
from campaigns.services.audiences import normalise_email
from campaigns.services.imports import (
    ImportFileError,
    email_normalise,
    import_job_cancel,
    import_job_create,
    import_job_run,
    import_job_start,
    jobs,
)
from tests.factories import AudienceFactory, RecipientFactory, SubscriptionFactory, UserFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.OPSDASH_IMPORT_CHUNK_ROWS = 2  # many chunks, tiny files


def create(name: str, **options: Any) -> ImportJob:
    with (FIXTURES / name).open("rb") as handle:
        return import_job_create(
            upload=File(handle, name=name),
            audience=options.pop("audience", None),
            created_by=options.pop("by", None),
            **options,
        )


def run(
    name: str, columns: list[str] | None = None, *, by: User | None = None, **options: object
) -> ImportJob:
    """Creates, maps (with the guessed mapping unless given) and runs an import."""
    by = by or UserFactory.create()
    job = create(name, by=by, **options)
    import_job_start(
        job=job, columns=columns or job.mapping["columns"], by=by, publish=lambda _pk: "task"
    )
    return import_job_run(import_job_id=job.pk)


def report_rows(job: ImportJob) -> list[dict[str, str]]:
    with job.error_report.open("rb") as handle:
        return list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))


def emails() -> set[str]:
    return set(Recipient.objects.values_list("email", flat=True))


def test_it_imports_valid_rows_and_reports_each_rejected_row_with_its_line() -> None:
    audience = AudienceFactory.create()
    job = run("valid.csv", audience=audience)

    assert job.status == ImportJob.Status.COMPLETED, job.message
    assert emails() == {
        "ada@example.com",
        "grace@example.com",
        "juergen@xn--bcher-kva.example",
        "=cmd@example.com",
    }
    ada = Recipient.objects.get(email="ada@example.com")
    # The first occurrence wins; the later duplicate is reported, not merged.
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert ada.attributes == {"city": "London", "plan": "pro"}
    assert Recipient.objects.get(email="grace@example.com").attributes == {"city": "Arlington"}
    assert Subscription.objects.filter(audience=audience, source_import=job).count() == 4
    assert (job.created_count, job.updated_count, job.unchanged_count) == (4, 0, 0)
    assert (job.skipped_count, job.invalid_count, job.total_rows) == (1, 1, 6)
    rows = report_rows(job)
    assert [(r["line"], r["outcome"]) for r in rows] == [("4", "invalid"), ("5", "skipped")]
    assert "not-an-email" in rows[0]["reason"]
    assert rows[1]["reason"] == "duplicate of line 2"


def test_past_the_in_memory_limit_the_database_finds_the_duplicates(
    settings: Settings,
) -> None:
    settings.OPSDASH_IMPORT_DEDUPE_IN_MEMORY = 0
    job = run("valid.csv", audience=AudienceFactory.create())

    assert (job.created_count, job.skipped_count, job.invalid_count) == (4, 1, 1)
    assert Recipient.objects.get(email="ada@example.com").last_name == "Lovelace"
    skipped = [r for r in report_rows(job) if r["outcome"] == "skipped"]
    assert [(r["line"], r["reason"]) for r in skipped] == [("5", "duplicate of line 2")]


def test_it_counts_created_updated_and_unchanged_against_the_database() -> None:
    audience = AudienceFactory.create()
    RecipientFactory.create(email="ada@example.com", first_name="Ada", last_name="Lovelace",
                     attributes={"city": "London", "plan": "pro"})  # fmt: skip
    SubscriptionFactory.create(
        recipient=Recipient.objects.get(email="ada@example.com"), audience=audience
    )
    RecipientFactory.create(
        email="grace@example.com", first_name="G", last_name="Hopper", attributes={}
    )

    job = run("valid.csv", audience=audience)

    assert (job.created_count, job.updated_count, job.unchanged_count) == (2, 1, 1)
    grace = Recipient.objects.get(email="grace@example.com")
    assert (grace.first_name, grace.attributes) == ("Grace", {"city": "Arlington"})


def test_it_keeps_existing_values_where_the_file_has_blanks_and_merges_attributes() -> None:
    RecipientFactory.create(email="grace@example.com", first_name="Grace", last_name="Hopper",
                     attributes={"plan": "team", "rank": "admiral"})  # fmt: skip

    run("valid.csv")

    grace = Recipient.objects.get(email="grace@example.com")
    assert grace.attributes == {"plan": "team", "rank": "admiral", "city": "Arlington"}


def test_it_does_not_resubscribe_suppressed_addresses_unless_asked() -> None:
    audience = AudienceFactory.create()
    RecipientFactory.create(
        email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED, first_name="A"
    )
    RecipientFactory.create(email="grace@example.com", status=Recipient.Status.BOUNCED)

    job = run("valid.csv", audience=audience)

    assert job.skipped_count == 3  # two suppressed, one duplicate
    ada = Recipient.objects.get(email="ada@example.com")
    assert (ada.status, ada.first_name) == (Recipient.Status.UNSUBSCRIBED, "A")
    assert not Subscription.objects.filter(recipient=ada).exists()
    reasons = {r["email"]: r["reason"] for r in report_rows(job) if "address" in r["reason"]}
    assert (
        reasons["ada@example.com"] == "the address is unsubscribed and resubscribe was not chosen"
    )
    assert reasons["grace@example.com"] == "the address is bounced and resubscribe was not chosen"


def test_resubscribe_reactivates_unsubscribed_and_bounced_but_never_complained() -> None:
    audience = AudienceFactory.create()
    ada = RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    SubscriptionFactory.create(
        recipient=ada, audience=audience, status=Subscription.Status.UNSUBSCRIBED
    )
    RecipientFactory.create(email="grace@example.com", status=Recipient.Status.COMPLAINED)

    by = UserFactory.create(is_superuser=True)  # re-subscribing takes its own permission
    job = run("valid.csv", audience=audience, resubscribe=True, by=by)

    ada.refresh_from_db()
    assert ada.status == Recipient.Status.ACTIVE
    assert Subscription.objects.get(recipient=ada).status == Subscription.Status.SUBSCRIBED
    grace = Recipient.objects.get(email="grace@example.com")
    assert grace.status == Recipient.Status.COMPLAINED
    assert not Subscription.objects.filter(recipient=grace).exists()
    assert job.updated_count == 1


def test_all_or_nothing_writes_nothing_when_a_row_is_invalid() -> None:
    job = run("valid.csv", audience=AudienceFactory.create(), all_or_nothing=True)

    assert job.status == ImportJob.Status.FAILED
    assert "nothing was written" in job.message
    assert Recipient.objects.count() == 0
    assert [r["line"] for r in report_rows(job) if r["outcome"] == "invalid"] == ["4"]


def test_the_audit_trail_names_who_started_and_who_ran_the_import() -> None:
    staff = UserFactory.create()
    job = run("valid.csv", by=staff)

    entries = AuditEntry.objects.filter(import_job=job).order_by("id")
    assert [(e.action, e.actor) for e in entries] == [
        ("import_started", staff),
        ("import_finished", staff),
    ]
    assert entries[1].changes["created"] == 4


def test_a_cancel_before_the_worker_starts_stops_the_job_and_writes_nothing() -> None:
    staff = UserFactory.create()
    job = create("valid.csv", by=staff)
    import_job_start(job=job, columns=job.mapping["columns"], by=staff, publish=lambda _pk: "t")

    import_job_cancel(job=job, by=staff)
    job = import_job_run(import_job_id=job.pk)

    assert job.status == ImportJob.Status.CANCELLED
    assert Recipient.objects.count() == 0
    assert AuditEntry.objects.filter(import_job=job, action="import_cancelled").count() == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("utf8_bom.csv", {"zoe@example.com": "Zoë"}),
        ("utf16.csv", {"zoe@example.com": "Zoë", "yann@example.com": "Yann"}),
        ("cp1252.csv", {"rene@example.com": "René", "elise@example.com": "Élise"}),
        ("semicolon.csv", {"kim@example.com": "Kim"}),
    ],
)
def test_it_detects_the_encoding_and_the_delimiter(name: str, expected: dict[str, str]) -> None:
    job = run(name)

    assert job.status == ImportJob.Status.COMPLETED, job.message
    assert dict(Recipient.objects.values_list("email", "first_name")) == expected


def test_a_quoted_delimiter_stays_in_its_field() -> None:
    run("semicolon.csv")
    assert Recipient.objects.get().attributes == {"Company": "Acme; Inc"}


def test_embedded_newlines_stay_in_their_field_and_lines_are_counted_from_the_file() -> None:
    job = run("embedded_newlines.csv")

    assert job.status == ImportJob.Status.COMPLETED
    assert Recipient.objects.get(email="ada@example.com").attributes == {
        "address": "12 St James's Square\nLondon"
    }
    assert job.created_count == 3


def test_mixed_line_endings_are_read_as_one_row_each() -> None:
    job = run("mixed_line_endings.csv")

    assert job.created_count == 4
    assert len(emails()) == 4


def test_rows_with_extra_or_missing_columns_are_rejected_with_their_line() -> None:
    job = run("ragged_rows.csv")

    assert job.status == ImportJob.Status.COMPLETED
    assert emails() == {"ada@example.com", "dorothy@example.com"}
    assert [(r["line"], r["reason"]) for r in report_rows(job)] == [
        ("3", "the row has 4 fields; the header has 3"),
        ("4", "the row has 2 fields; the header has 3"),
    ]


def test_a_field_longer_than_the_csv_default_limit_rejects_only_its_row() -> None:
    job = run("long_field.csv")

    assert job.status == ImportJob.Status.COMPLETED
    assert emails() == {"short@example.com", "after@example.com"}
    [row] = report_rows(job)
    assert (row["line"], row["reason"]) == ("3", "a field is longer than 131,072 characters")


def test_a_field_longer_than_the_configured_limit_refuses_the_file(
    settings: Settings,
) -> None:
    settings.OPSDASH_IMPORT_MAX_FIELD_CHARS = 135_000
    job = run("long_field.csv")

    assert job.status == ImportJob.Status.FAILED
    assert job.message.startswith("Line 3: a field is longer than 135,000 characters.")
    assert Recipient.objects.count() == 0


def test_unbalanced_quotes_refuse_the_file_and_write_nothing() -> None:
    job = run("unbalanced_quotes.csv")

    assert job.status == ImportJob.Status.FAILED
    assert "unbalanced quotes" in job.message
    assert "Nothing was written" in job.message
    assert Recipient.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "The file is empty."),
        ("header_only.csv", "The file has a header line but no rows."),
        ("binary.csv", "This looks like a binary file"),
        ("duplicate_headers.csv", "The header names these columns more than once: Email, email."),
    ],
)
def test_unusable_files_are_refused_on_upload_with_a_clear_message(name: str, message: str) -> None:
    with pytest.raises(ImportFileError, match=message.replace(".", r"\.")):
        create(name)
    assert ImportJob.objects.count() == 0


def test_an_oversized_file_is_refused_with_the_configured_limit(
    settings: Settings,
) -> None:
    settings.OPSDASH_IMPORT_MAX_BYTES = 4 * 1024
    with pytest.raises(
        ImportFileError, match=r"The file is 6 KB; the largest file an import accepts is 4 KB\."
    ):
        create("oversized.csv")
    assert ImportJob.objects.count() == 0


def test_a_file_without_an_email_column_cannot_be_started() -> None:
    job = create("no_email_column.csv")

    with pytest.raises(ImportFileError, match="Exactly one column must be the email address"):
        import_job_start(job=job, columns=job.mapping["columns"], by=None, publish=lambda _: "t")
    assert job.status == ImportJob.Status.PENDING


def test_the_mapping_can_name_any_column_as_the_email() -> None:
    job = create("semicolon.csv")
    import_job_start(
        job=job, columns=["email", "ignore", "last_name", "ignore"], by=None, publish=lambda _: "t"
    )
    job = import_job_run(import_job_id=job.pk)
    kim = Recipient.objects.get()
    assert (kim.first_name, kim.last_name, kim.attributes) == ("", "Lee", {})


@pytest.mark.parametrize(
    "raw",
    [
        "Ada@Example.COM",
        "  padded@example.com ",
        "<angle@example.com>",
        "juergen@bücher.example",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
    ],
)
def test_the_fast_normaliser_agrees_with_the_reference_one(raw: str) -> None:
    assert email_normalise(raw) == normalise_email(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "two@@example.com",
        "dot.@example.com",
        "a@-bad.com",
        "a@b",
        "x" * 250 + "@example.com",
    ],
)
def test_the_fast_normaliser_rejects_what_the_reference_rejects(raw: str) -> None:
    from campaigns.services.audiences import InvalidEmail

    with pytest.raises(InvalidEmail):
        email_normalise(raw)


def test_the_report_escapes_cells_a_spreadsheet_would_run(tmp_path: Path) -> None:
    path = tmp_path / "formula.csv"
    path.write_text('email,first_name\n"=HYPERLINK(""http://x"")",Eve\nok@example.com,Ok\n')
    by = UserFactory.create()
    with path.open("rb") as handle:
        job = import_job_create(
            upload=File(handle, name="formula.csv"), audience=None, created_by=by
        )
    import_job_start(job=job, columns=job.mapping["columns"], by=by, publish=lambda _pk: "t")
    job = import_job_run(import_job_id=job.pk)

    [row] = report_rows(job)
    assert row["email"] == '\'=HYPERLINK("http://x")'


def test_a_lost_database_leaves_the_job_running_for_its_task_to_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    by = UserFactory.create()
    job = create("valid.csv", by=by)
    import_job_start(job=job, columns=job.mapping["columns"], by=by, publish=lambda _pk: "task")

    def connection_lost(**_: object) -> None:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(jobs, "staged_merge", connection_lost)
    with pytest.raises(OperationalError):
        import_job_run(import_job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING and not emails()

    monkeypatch.undo()  # the database is back: the task's next run imports the file
    finished = import_job_run(import_job_id=job.pk)
    assert finished.status == ImportJob.Status.COMPLETED and finished.created_count > 0
