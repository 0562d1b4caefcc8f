"""Importing recipients in the admin: upload, mapping (the preview), run now or in the background,
report; one flow for every file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import NoReverseMatch, reverse
from pytest_django import Settings

from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription
from opsdash.celery import app
from tests.factories import AudienceFactory, RecipientFactory, UserFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
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
    audience = AudienceFactory.create()
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
             "column_3": "attribute", "column_4": "ignore", "background": "on"},
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
    assert isinstance(report, StreamingHttpResponse)
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
    assert entry.actor is not None
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


# --- The Recipients "Import" button: the same flow, run in the request ------------------


def upload(
    client: Client, content: bytes | str, name: str = "people.csv", **data: Any
) -> ImportJob:
    """Uploads a file through the import page and returns the job waiting for its mapping."""
    raw = content.encode() if isinstance(content, str) else content
    response = client.post(
        reverse("admin:campaigns_importjob_add"),
        {"file": SimpleUploadedFile(name, raw, content_type="text/csv"), **data},
    )
    job = ImportJob.objects.order_by("-pk").first()
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert job is not None
    return job


def run_mapped(client: Client, job: ImportJob, **data: Any) -> Any:
    """Posts the mapping page with the guessed columns (the user only presses Run)."""
    columns = {f"column_{i}": target for i, target in enumerate(job.mapping["columns"])}
    return client.post(
        reverse("admin:campaigns_importjob_mapping", args=[job.pk]), {**columns, **data}
    )


def test_the_recipients_import_button_leads_to_the_import_flow(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:campaigns_recipient_changelist")).content.decode()
    button = reverse("admin:campaigns_recipient_import_recipients")
    assert button in page
    response = admin_client.get(button)
    assert response["Location"] == reverse("admin:campaigns_importjob_add")
    with pytest.raises(NoReverseMatch):
        reverse("admin:campaigns_recipient_import")


def test_a_small_file_is_previewed_then_run_and_joins_the_audience(admin_client: Client) -> None:
    audience = AudienceFactory.create()
    job = upload(
        admin_client, (FIXTURES / "mixed_line_endings.csv").read_bytes(), audience=audience.pk
    )
    preview = admin_client.get(reverse("admin:campaigns_importjob_mapping", args=[job.pk]))
    assert "ada@example.com" in preview.content.decode()
    assert Recipient.objects.count() == 0  # the preview writes nothing

    response = run_mapped(admin_client, job)
    assert response["Location"] == reverse("admin:campaigns_importjob_change", args=[job.pk])
    job.refresh_from_db()
    assert job.status == ImportJob.Status.COMPLETED and job.task_id == ""
    assert Recipient.objects.count() == 4
    assert Subscription.objects.filter(audience=audience).count() == 4
    page = admin_client.get(response["Location"]).content.decode()
    assert "Done: 4 created" in page


def test_the_small_file_path_upserts_by_normalised_email_and_keeps_extra_columns(
    admin_client: Client,
) -> None:
    RecipientFactory.create(
        email="grace@example.com", first_name="G", attributes={"rank": "admiral"}
    )
    job = upload(admin_client, (FIXTURES / "valid.csv").read_bytes(), name="valid.csv")
    response = run_mapped(admin_client, job)

    # The invalid row is reported with its line; it no longer blocks the rest of the file.
    page = admin_client.get(response["Location"]).content.decode()
    assert "import-rejected-rows" in page and "not-an-email" in page
    grace = Recipient.objects.get(email="grace@example.com")
    assert (grace.first_name, grace.last_name) == ("Grace", "Hopper")
    assert grace.attributes == {"rank": "admiral", "city": "Arlington"}
    job.refresh_from_db()
    assert (job.created_count, job.updated_count, job.skipped_count, job.invalid_count) == (
        3, 1, 1, 1,
    )  # fmt: skip


def test_the_small_file_path_does_not_resubscribe_unless_asked(admin_client: Client) -> None:
    RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    data = "email,first_name\nada@example.com,Ada\n"
    for resubscribe, expected in (("", "unsubscribed"), ("on", "active")):
        run_mapped(admin_client, upload(admin_client, data, resubscribe=resubscribe))
        assert Recipient.objects.get().status == expected


def test_a_large_or_chosen_file_becomes_a_background_job(
    admin_client: Client, settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    job = upload(admin_client, (FIXTURES / "valid.csv").read_bytes())
    with django_capture_on_commit_callbacks() as queued:
        response = run_mapped(admin_client, job, background="on")
    assert len(queued) == 1
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING and Recipient.objects.count() == 0
    assert "The import is queued" in admin_client.get(response["Location"]).content.decode()

    settings.OPSDASH_IMPORT_BACKGROUND_BYTES = 100
    job = upload(admin_client, (FIXTURES / "oversized.csv").read_bytes())
    with django_capture_on_commit_callbacks() as queued:
        run_mapped(admin_client, job)  # not asked, but too large to run in the request
    assert len(queued) == 1
    assert Recipient.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cp1252.csv", {"rene@example.com": "René", "elise@example.com": "Élise"}),
        ("utf16.csv", {"zoe@example.com": "Zoë", "yann@example.com": "Yann"}),
        ("mailchimp.csv", {"mae@example.com": "Mae", "sally@example.com": "Sally"}),
    ],
)
def test_excel_encodings_and_a_mailchimp_export_import_from_the_admin(
    admin_client: Client, name: str, expected: dict[str, str]
) -> None:
    job = upload(admin_client, (FIXTURES / name).read_bytes(), name=name)
    run_mapped(admin_client, job)
    assert dict(Recipient.objects.values_list("email", "first_name")) == expected


def test_a_file_with_two_columns_of_one_name_is_refused_on_upload(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"), {"file": fixture_upload("same_name_columns.csv")}
    )
    assert "The header names these columns more than once: email." in response.content.decode()
    assert ImportJob.objects.count() == 0


def test_the_delivery_log_exports_with_formulas_escaped(admin_client: Client) -> None:
    from campaigns.models import Delivery, Send
    from tests.factories import CampaignFactory

    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    Delivery.objects.create(
        send=send, recipient=RecipientFactory.create(email="x@example.com"), status="failed",
        last_error="=HYPERLINK(\"http://evil\")", smtp_response="-550 no",
    )  # fmt: skip
    response = admin_client.get(reverse("admin:campaigns_recipient_export_delivery_log_csv"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["last_error"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["smtp_response"] == "'-550 no"
    assert rows[0]["recipient"] == "x@example.com"


def test_an_oversized_upload_is_refused_with_the_limit(
    admin_client: Client, settings: Settings
) -> None:
    settings.OPSDASH_IMPORT_MAX_BYTES = 4 * 1024
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"), {"file": fixture_upload("oversized.csv")}
    )
    assert "the largest file an import accepts is 4 KB" in response.content.decode()
    assert ImportJob.objects.count() == 0


def test_importing_takes_the_recipient_permissions_as_well(client: Client) -> None:
    """Creating import jobs alone is not enough: an import adds and changes recipients."""
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["add_importjob", "view_importjob", "view_recipient"]
        )
    )
    client.force_login(user)
    job = ImportJob.objects.create(file="imports/x.csv", mapping={"headers": ["email"]})
    assert client.get(reverse("admin:campaigns_importjob_add")).status_code == 403
    assert (
        client.get(reverse("admin:campaigns_importjob_mapping", args=[job.pk])).status_code == 403
    )
    page = client.get(reverse("admin:campaigns_recipient_changelist")).content.decode()
    assert reverse("admin:campaigns_recipient_import_recipients") not in page


# --- Consent and ownership --------------------------------------------------------------


def logged_in(*roles: str) -> tuple[Client, Any]:
    from tests.admin.helpers import user_with_roles

    user = user_with_roles(*roles)
    client = Client()
    client.force_login(user)
    return client, user


def test_the_resubscribe_option_is_offered_only_with_its_permission() -> None:
    RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    editor, _ = logged_in("editor")
    assert (
        'name="resubscribe"'
        not in editor.get(reverse("admin:campaigns_importjob_add")).content.decode()
    )
    # A hand-made POST carrying the option is not honoured.
    job = upload(editor, "email\nada@example.com\n", resubscribe="on")
    assert job.resubscribe is False
    run_mapped(editor, job)
    assert Recipient.objects.get().status == Recipient.Status.UNSUBSCRIBED
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.RESUBSCRIBED).exists()

    both, user = logged_in("editor", "approver")
    page = both.get(reverse("admin:campaigns_importjob_add")).content.decode()
    assert 'name="resubscribe"' in page
    run_mapped(both, upload(both, "email\nada@example.com\n", resubscribe="on"))
    assert Recipient.objects.get().status == Recipient.Status.ACTIVE
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RESUBSCRIBED)
    assert (entry.actor, entry.changes["resubscribed"]) == (user, 1)


def test_another_users_import_is_not_found_on_every_one_of_its_views(
    django_capture_on_commit_callbacks: Any,
) -> None:
    owner, _ = logged_in("editor")
    other, _ = logged_in("editor")
    job = upload(owner, "email\nada@example.com\nnot-an-email\n")
    mapping = reverse("admin:campaigns_importjob_mapping", args=[job.pk])
    assert other.get(mapping).status_code == 404
    assert run_mapped(other, job).status_code == 404
    cancel = reverse("admin:campaigns_importjob_cancel", args=[job.pk])
    assert other.post(cancel).status_code == 404
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING and not Recipient.objects.exists()

    run_mapped(owner, job)
    job.refresh_from_db()
    assert job.error_report
    report = reverse("admin:campaigns_importjob_report", args=[job.pk])
    assert other.get(report).status_code == 404
    assert owner.get(report).status_code == 200
    change = reverse("admin:campaigns_importjob_change", args=[job.pk])
    assert "not-an-email" not in other.get(change).content.decode()
    assert report not in other.get(change).content.decode()
    assert "not-an-email" in owner.get(change).content.decode()
    auditor, _ = logged_in("auditor")
    assert auditor.get(report).status_code == 404
    superuser = Client()
    superuser.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    assert superuser.get(report).status_code == 200


def test_a_tiny_workbook_claiming_a_whole_sheet_is_refused_on_the_upload_form(
    admin_client: Client, settings: Settings
) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_importjob_add"),
        {"file": fixture_upload("huge_dimension.xlsx")},
    )
    assert response.status_code == 200
    assert "declares 1,048,576 rows x 16,384 columns" in response.content.decode()
    assert ImportJob.objects.count() == 0
    assert not any(Path(settings.MEDIA_ROOT).rglob("*.*"))
