"""Re-subscribing opted-out addresses through an import: its own permission, and audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.files import File
from pytest_django import Settings

from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription
from campaigns.services.imports import import_job_create, import_job_run, import_job_start
from tests.admin.helpers import user_with_roles
from tests.factories import AudienceFactory, RecipientFactory, SubscriptionFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "imports"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings: Settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def create(by: User | None, **options: object) -> ImportJob:
    with (FIXTURES / "valid.csv").open("rb") as handle:
        return import_job_create(
            upload=File(handle, name="valid.csv"),
            audience=options.pop("audience", None),  # type: ignore[arg-type]
            created_by=by,
            resubscribe=True,
        )


def start(job: ImportJob, by: User | None) -> ImportJob:
    job = import_job_start(
        job=job, columns=job.mapping["columns"], by=by, publish=lambda _pk: "task"
    )
    return import_job_run(import_job_id=job.pk)


def test_an_editor_cannot_create_a_resubscribing_import() -> None:
    RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    with pytest.raises(PermissionDenied):
        create(user_with_roles("editor"))
    assert not ImportJob.objects.exists()
    assert Recipient.objects.get().status == Recipient.Status.UNSUBSCRIBED


def test_an_editor_cannot_start_a_resubscribing_import_someone_else_prepared() -> None:
    RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    job = create(None)  # prepared by the system (a command), which may
    with pytest.raises(PermissionDenied):
        start(job, user_with_roles("editor"))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING and job.task_id == ""
    assert Recipient.objects.get(email="ada@example.com").status == Recipient.Status.UNSUBSCRIBED
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.IMPORT_STARTED).exists()


def test_a_resubscribing_import_audits_who_resubscribed_how_many_and_whom() -> None:
    audience = AudienceFactory.create()
    ada = RecipientFactory.create(email="ada@example.com", status=Recipient.Status.UNSUBSCRIBED)
    grace = RecipientFactory.create(email="grace@example.com")  # active, but left the audience
    SubscriptionFactory.create(
        recipient=grace, audience=audience, status=Subscription.Status.UNSUBSCRIBED
    )
    RecipientFactory.create(email="=cmd@example.com", status=Recipient.Status.COMPLAINED)
    approver = user_with_roles("editor", "approver")

    job = start(create(approver, audience=audience), approver)

    assert job.status == ImportJob.Status.COMPLETED, job.message
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RESUBSCRIBED)
    assert (entry.actor, entry.import_job) == (approver, job)
    assert entry.changes["resubscribed"] == 2  # the complaint stays suppressed
    assert entry.changes["recipient_ids"] == sorted([ada.pk, grace.pk])
    assert entry.changes["audience"] == audience.pk


def test_an_import_without_resubscribe_writes_no_resubscribe_entry() -> None:
    editor = user_with_roles("editor")
    with (FIXTURES / "valid.csv").open("rb") as handle:
        job = import_job_create(
            upload=File(handle, name="valid.csv"), audience=None, created_by=editor
        )
    start(job, editor)
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.RESUBSCRIBED).exists()
