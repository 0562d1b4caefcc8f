"""The suppression list: every staff role reads it, filters it by reason, source and date,
finds an address by its start or a whole domain, and exports it with formulas escaped."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import openpyxl
import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import AuditEntry, DeliveryEvent, Recipient, Suppression
from campaigns.resources import SuppressionResource
from tests.admin.helpers import user_with_roles
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db

Reason = Suppression.Reason
LIST = "admin:campaigns_suppression_changelist"


def suppress(email: str, reason: str = Reason.HARD_BOUNCE, **fields: object) -> Suppression:
    return Suppression.objects.create(email=email, reason=reason, **fields)


def listed(client: Client, query: str = "") -> str:
    response = client.get(reverse(LIST) + query)
    assert response.status_code == 200
    return response.content.decode()


def body(response: Any) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)  # type: ignore[arg-type]
    return bytes(response.content)


@pytest.mark.parametrize("role", ["editor", "approver", "auditor"])
def test_every_staff_role_reads_the_list_but_cannot_add_or_change(role: str) -> None:
    client = Client()
    client.force_login(user_with_roles(role))
    row = suppress("gone@example.com")
    assert "gone@example.com" in listed(client)
    assert client.get(reverse("admin:campaigns_suppression_add")).status_code == 403
    change = reverse("admin:campaigns_suppression_change", args=[row.pk])
    assert client.post(change, {"email": "other@example.com"}).status_code == 403
    row.refresh_from_db()
    assert row.email == "gone@example.com"


def test_the_list_shows_reason_detail_source_time_and_the_recipient(auditor: Client) -> None:
    recipient = RecipientFactory.create(email="ada@example.com")
    suppress(
        "ada@example.com",
        Reason.COMPLAINT,
        detail="Marked as spam in Gmail " + "x" * 200,
        source="postmark",
        recipient=recipient,
    )
    page = listed(auditor)
    assert "ada@example.com" in page and "Spam complaint" in page and "postmark" in page
    assert "Marked as spam in Gmail" in page and "x" * 100 not in page  # truncated
    assert reverse("admin:campaigns_recipient_change", args=[recipient.pk]) in page
    row = Suppression.objects.get(email="ada@example.com")
    detail = auditor.get(reverse("admin:campaigns_suppression_change", args=[row.pk]))
    text = detail.content.decode()
    assert "Spam complaint" in text and "('complaint'" not in text  # a label, not a tuple
    assert "x" * 200 in text  # the whole detail on the record's own page


def test_the_record_links_the_event_to_its_delivery(auditor: Client) -> None:
    event = DeliveryEvent.objects.create(
        source="postmark", event_key="e1", kind=DeliveryEvent.Kind.BOUNCED, delivery_id=4242
    )
    row = suppress("gone@example.com", event=event, source="postmark")
    page = auditor.get(reverse("admin:campaigns_suppression_change", args=[row.pk]))
    text = page.content.decode()
    assert "Hard bounce reported by postmark" in text
    assert reverse("admin:campaigns_delivery_change", args=[4242]) in text


def test_it_filters_by_reason_source_and_date(auditor: Client) -> None:
    suppress("hard@example.com", Reason.HARD_BOUNCE, source="bounce_mail")
    suppress("spam@example.com", Reason.COMPLAINT, source="postmark")
    old = suppress("old@example.com", Reason.COMPLAINT, source="postmark")
    Suppression.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=90))

    page = listed(auditor, "?reason__exact=complaint")
    assert "spam@example.com" in page and "old@example.com" in page
    assert "hard@example.com" not in page
    page = listed(auditor, "?source=bounce_mail")
    assert "hard@example.com" in page and "spam@example.com" not in page
    since = urlencode({"created_at__gte": (timezone.now() - timedelta(days=7)).isoformat()})
    page = listed(auditor, f"?{since}")
    assert "spam@example.com" in page and "old@example.com" not in page


@pytest.mark.parametrize(
    ("term", "found", "not_found"),
    [
        ("Ada@", "ada@example.com", "bob@example.com"),
        ("ada@example.com", "ada@example.com", "ada@other.org"),
        ("@Example.com", "bob@example.com", "ada@other.org"),
    ],
)
def test_search_finds_the_start_of_an_address_or_a_whole_domain(
    auditor: Client, term: str, found: str, not_found: str
) -> None:
    for email in ("ada@example.com", "bob@example.com", "ada@other.org"):
        suppress(email)
    page = listed(auditor, f"?q={term}")
    assert found in page and not_found not in page


def test_the_export_escapes_addresses_and_details_a_spreadsheet_would_run(
    auditor: Client,
) -> None:
    suppress("=cmd@example.com", Reason.REJECTED, detail='=HYPERLINK("http://evil")')
    suppress("plain@example.com", Reason.MANUAL, detail="-1+1", source="@staff")
    rows = list(csv.DictReader(io.StringIO(_export(auditor, 0).decode())))
    by_email = {row["email"]: row for row in rows}
    assert set(by_email) == {"'=cmd@example.com", "plain@example.com"}
    assert by_email["'=cmd@example.com"]["detail"] == '\'=HYPERLINK("http://evil")'
    assert by_email["'=cmd@example.com"]["reason"] == "Refused by the server (no such mailbox)"
    assert by_email["plain@example.com"]["detail"] == "'-1+1"
    assert by_email["plain@example.com"]["source"] == "'@staff"

    sheet = openpyxl.load_workbook(io.BytesIO(_export(auditor, 1)), read_only=True).active
    assert sheet is not None
    cells = {str(cell) for row in sheet.iter_rows(values_only=True) for cell in row}
    assert "'=cmd@example.com" in cells and "=cmd@example.com" not in cells


def test_the_export_follows_the_lists_filter(auditor: Client) -> None:
    suppress("hard@example.com", Reason.HARD_BOUNCE)
    suppress("spam@example.com", Reason.COMPLAINT)
    content = _export(auditor, 0, "?reason__exact=complaint").decode()
    assert "spam@example.com" in content and "hard@example.com" not in content


def test_the_resource_exports_every_row_escaped() -> None:
    suppress("+1@example.com")
    dataset = SuppressionResource().export()
    assert dataset.dict[0]["email"] == "'+1@example.com"


def _export(client: Client, file_format: int, query: str = "") -> bytes:
    url = reverse("admin:campaigns_suppression_export") + query
    response = client.post(url, {"format": str(file_format), "resource": "0"})
    assert response.status_code == 200
    return body(response)


def test_only_approvers_are_offered_the_lift(auditor: Client) -> None:
    row = suppress("gone@example.com")
    lift = reverse("admin:campaigns_suppression_lift", args=[row.pk])
    change = reverse("admin:campaigns_suppression_change", args=[row.pk])
    assert lift not in auditor.get(change).content.decode()
    assert auditor.post(lift, {"reason": "asked"}).status_code == 403
    approver = Client()
    approver.force_login(user_with_roles("approver"))
    assert lift in approver.get(change).content.decode()
    assert "Why this address may be mailed again" in approver.get(lift).content.decode()


def test_an_approver_lifts_a_suppression_with_a_reason() -> None:
    recipient = RecipientFactory.create(email="back@example.com", status=Recipient.Status.BOUNCED)
    row = suppress("back@example.com", recipient=recipient)
    client = Client()
    client.force_login(user_with_roles("approver"))
    lift = reverse("admin:campaigns_suppression_lift", args=[row.pk])
    response = client.post(lift, {"reason": "New mailbox, confirmed by phone"})
    assert response.status_code == 302
    assert not Suppression.objects.filter(email="back@example.com").exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SUPPRESSION_LIFTED).exists()
