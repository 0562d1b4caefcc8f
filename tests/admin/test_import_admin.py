"""Importing recipients in the admin: the small-file preview, and the background job's pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription
from opsdash.celery import app
from tests.factories import AudienceFactory, RecipientFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Runs published tasks in this process, so a test sees the worker's outcome."""
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def fixture_upload(name: str, field: str = "file") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, (FIXTURES / name).read_bytes(), content_type="text/csv")


def test_a_background_import_goes_from_upload_through_mapping_to_its_report(
    admin_client: Client, django_capture_on_commit_callbacks: Any, eager_tasks: None
) -> None:
    audience = AudienceFactory()
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"),
        {"file": fixture_upload("valid.csv"), "audience": audience.pk},
    )
    job = ImportJob.objects.get()
    mapping_url = reverse("admin:campaigns_importjob_mapping", args=[job.pk])
    assert response.status_code == 302 and response["Location"] == mapping_url

    page = admin_client.get(mapping_url).content.decode()
    assert "city" in page and "Ada@Example.com" in page  # each column with its first values
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            mapping_url,
            {"column_0": "email", "column_1": "first_name", "column_2": "last_name",
             "column_3": "attribute", "column_4": "ignore"},
        )  # fmt: skip
    assert response.status_code == 302

    job.refresh_from_db()
    assert job.status == ImportJob.Status.COMPLETED, job.message
    assert job.task_id
    assert Recipient.objects.get(email="ada@example.com").attributes == {"city": "London"}
    assert Subscription.objects.filter(audience=audience).count() == 4
    page = admin_client.get(response["Location"]).content.decode()
    assert "import-progress" in page and "Download the rejected rows" in page
    progress = admin_client.get(reverse("admin:campaigns_importjob_progress", args=[job.pk]))
    assert progress.json()["finished"] is True
    assert progress.json()["counts"] == {
        "created": 4, "updated": 0, "unchanged": 0, "skipped": 1, "invalid": 1,
    }  # fmt: skip
    report = admin_client.get(reverse("admin:campaigns_importjob_report", args=[job.pk]))
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert rows[0] == ["line", "email", "outcome", "reason"]
    assert [r[0] for r in rows[1:]] == ["4", "5"]


def test_the_progress_of_a_running_import_is_served_for_the_bar(admin_client: Client) -> None:
    job = ImportJob.objects.create(
        file="imports/x.csv", status=ImportJob.Status.RUNNING, total_rows=200, processed_rows=50
    )
    data = admin_client.get(reverse("admin:campaigns_importjob_progress", args=[job.pk])).json()
    assert (data["percent"], data["finished"], data["status"]) == (25, False, "running")
    page = admin_client.get(reverse("admin:campaigns_importjob_change", args=[job.pk]))
    assert 'style="width: 25%"' in page.content.decode()
    assert "Cancel the import" in page.content.decode()


def test_cancelling_from_the_admin_records_who_cancelled(admin_client: Client) -> None:
    job = ImportJob.objects.create(file="imports/x.csv")
    response = admin_client.post(reverse("admin:campaigns_importjob_cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    entry = AuditEntry.objects.get(import_job=job)
    assert (entry.action, entry.actor.username) == ("import_cancelled", "admin")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "file is empty."),
        ("binary.csv", "This looks like a binary file"),
        ("duplicate_headers.csv", "more than once"),
        ("header_only.csv", "a header line but no rows"),
    ],
)
def test_an_unusable_upload_is_refused_on_the_form(
    admin_client: Client, name: str, message: str
) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"), {"file": fixture_upload(name)}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert ImportJob.objects.count() == 0


def test_a_file_without_an_email_column_is_stopped_at_the_mapping(admin_client: Client) -> None:
    admin_client.post(
        reverse("admin:campaigns_importjob_add"), {"file": fixture_upload("no_email_column.csv")}
    )
    job = ImportJob.objects.get()
    response = admin_client.post(
        reverse("admin:campaigns_importjob_mapping", args=[job.pk]),
        {"column_0": "first_name", "column_1": "attribute"},
    )
    assert "Exactly one column must be the email address" in response.content.decode()
    job.refresh_from_db()
    assert job.task_id == "" and job.status == ImportJob.Status.PENDING


# --- The recipients' own import (django-import-export) ----------------------------------


def import_post(client: Client, name: str, **data: Any) -> Any:
    return client.post(
        reverse("admin:campaigns_recipient_import"),
        {"import_file": fixture_upload(name), "format": "0", "resource": "0", **data},
    )


def posted(form: Any) -> dict[str, Any]:
    """What the browser sends back from the confirm form's hidden fields."""
    return {k: ("" if v is None else v) for k, v in form.initial.items()}


def test_a_small_file_is_previewed_then_confirmed_and_joins_the_audience(
    admin_client: Client,
) -> None:
    audience = AudienceFactory()
    preview = import_post(admin_client, "mixed_line_endings.csv", audience=audience.pk)
    assert preview.status_code == 200
    confirm = preview.context["confirm_form"]
    assert Recipient.objects.count() == 0  # a dry run writes nothing

    response = admin_client.post(
        reverse("admin:campaigns_recipient_process_import"),
        {**confirm.initial, "audience": audience.pk, "resubscribe": ""},
    )
    assert response.status_code == 302
    assert Recipient.objects.count() == 4
    assert Subscription.objects.filter(audience=audience).count() == 4


def test_the_small_file_path_upserts_by_normalised_email_and_keeps_extra_columns(
    admin_client: Client,
) -> None:
    RecipientFactory(email="grace@example.com", first_name="G", attributes={"rank": "admiral"})
    preview = import_post(admin_client, "valid.csv")
    result = preview.context["result"]
    assert result.has_validation_errors()  # "not-an-email" is shown, the import not offered

    # The library refuses a file with an invalid row; without it, it goes through.
    good = "email,first_name,last_name,city\nGRACE@example.com,Grace,,Arlington\n"
    response = admin_client.post(
        reverse("admin:campaigns_recipient_import"),
        {
            "import_file": SimpleUploadedFile("g.csv", good.encode()),
            "format": "0",
            "resource": "0",
        },
    )
    confirm = response.context["confirm_form"]
    admin_client.post(reverse("admin:campaigns_recipient_process_import"), posted(confirm))
    grace = Recipient.objects.get()
    assert (grace.email, grace.first_name, grace.last_name) == (
        "grace@example.com",
        "Grace",
        "Tester",
    )
    assert grace.attributes == {"rank": "admiral", "city": "Arlington"}


def test_the_small_file_path_does_not_resubscribe_unless_asked(admin_client: Client) -> None:
    RecipientFactory(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    data = "email,first_name\nada@example.com,Ada\n"
    for resubscribe, expected in (("", "unsubscribed"), ("on", "active")):
        response = admin_client.post(
            reverse("admin:campaigns_recipient_import"),
            {
                "import_file": SimpleUploadedFile("a.csv", data.encode()),
                "format": "0",
                "resource": "0",
                "resubscribe": resubscribe,
            },
        )
        confirm = response.context["confirm_form"]
        admin_client.post(reverse("admin:campaigns_recipient_process_import"), posted(confirm))
        assert Recipient.objects.get().status == expected


def test_a_large_or_chosen_file_becomes_a_background_job(
    admin_client: Client, settings: Any
) -> None:
    response = import_post(admin_client, "valid.csv", background="on")
    job = ImportJob.objects.get()
    assert response["Location"] == reverse("admin:campaigns_importjob_mapping", args=[job.pk])

    settings.OPSDASH_IMPORT_BACKGROUND_BYTES = 100
    response = import_post(admin_client, "oversized.csv")
    assert response.status_code == 302
    assert ImportJob.objects.count() == 2


def test_the_delivery_log_exports_with_formulas_escaped(admin_client: Client) -> None:
    from campaigns.models import Delivery, Send
    from tests.factories import CampaignFactory

    send = Send.objects.create(campaign=CampaignFactory(), occurrence_key="once")
    Delivery.objects.create(
        send=send, recipient=RecipientFactory(email="x@example.com"), status="failed",
        last_error="=HYPERLINK(\"http://evil\")", smtp_response="-550 no",
    )  # fmt: skip
    response = admin_client.get(reverse("admin:campaigns_recipient_export_delivery_log_csv"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["last_error"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["smtp_response"] == "'-550 no"
    assert rows[0]["recipient"] == "x@example.com"


def test_an_oversized_upload_is_refused_with_the_limit(admin_client: Client, settings: Any) -> None:
    settings.OPSDASH_IMPORT_MAX_BYTES = 4 * 1024
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"), {"file": fixture_upload("oversized.csv")}
    )
    assert "the largest file an import accepts is 4 KB" in response.content.decode()
    response = import_post(admin_client, "oversized.csv", background="on")
    assert response["Location"] == reverse("admin:campaigns_recipient_import")
    page = admin_client.get(response["Location"]).content.decode()
    assert "the largest file an import accepts is 4 KB" in page
    assert ImportJob.objects.count() == 0
