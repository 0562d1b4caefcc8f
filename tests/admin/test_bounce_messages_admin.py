"""Bounce mail no parser understood: listed for a person (those needing review first), shown
whole and safely, and dismissed by an approver."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from campaigns.models import BounceMessage
from campaigns.services.bounce_review import bounce_message_dismiss
from opsdash.admin_site import bounce_review_badge
from tests.admin.helpers import user_with_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

Status = BounceMessage.Status
LIST = "admin:campaigns_bouncemessage_changelist"


def a_message(subject: str, status: str = Status.NEEDS_REVIEW, **fields: object) -> BounceMessage:
    raw = fields.pop("raw", f"Subject: {subject}\r\n\r\nUndeliverable".encode())
    return BounceMessage.objects.create(
        subject=subject,
        status=status,
        raw=raw,
        mail_from="MAILER-DAEMON@mx.example.net",
        rcpt_to="bounces+abc@bounce.example.com",
        problem="No parser recognised this report" if status == Status.NEEDS_REVIEW else "",
        **fields,
    )


def approver() -> Client:
    client = Client()
    client.force_login(user_with_roles("approver"))
    return client


def test_the_list_opens_on_the_messages_that_need_review(auditor: Client) -> None:
    a_message("Strange report")
    a_message("A parsed bounce", Status.PARSED)
    a_message("Old noise", Status.DISMISSED)
    page = auditor.get(reverse(LIST)).content.decode()
    assert "Strange report" in page and "No parser recognised this report" in page
    assert "MAILER-DAEMON@mx.example.net" in page and "bounces+abc@bounce.example.com" in page
    assert "A parsed bounce" not in page and "Old noise" not in page

    everything = auditor.get(reverse(LIST) + "?status=all").content.decode()
    assert all(s in everything for s in ("Strange report", "A parsed bounce", "Old noise"))
    parsed = auditor.get(reverse(LIST) + "?status=parsed").content.decode()
    assert "A parsed bounce" in parsed and "Strange report" not in parsed


def test_the_message_page_shows_the_raw_mail_escaped_and_decoded_safely(auditor: Client) -> None:
    raw = b"Subject: x\r\n\r\n<script>alert(1)</script>\r\nbad byte: \xff\xfe end"
    message = a_message("Hostile", raw=raw)
    page = auditor.get(reverse("admin:campaigns_bouncemessage_change", args=[message.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)</script>" not in text
    assert "bad byte: \ufffd\ufffd end" in text
    assert "Needs a person" in text and "('needs_review'" not in text  # a label, not a tuple


def test_an_approver_dismisses_a_message_from_its_page() -> None:
    message = a_message("Strange report")
    client = approver()
    url = reverse("admin:campaigns_bouncemessage_dismiss", args=[message.pk])
    assert client.get(url).status_code == 405  # a link never dismisses
    assert client.post(url).status_code == 302
    message.refresh_from_db()
    assert message.status == Status.DISMISSED


def test_an_approver_dismisses_several_from_the_list() -> None:
    first, second = a_message("One"), a_message("Two")
    parsed = a_message("Parsed", Status.PARSED)
    response = approver().post(
        reverse(LIST),
        {"action": "dismiss_selected", "_selected_action": [first.pk, second.pk, parsed.pk]},
    )
    assert response.status_code == 302
    statuses = dict(BounceMessage.objects.values_list("subject", "status"))
    assert statuses == {"One": Status.DISMISSED, "Two": Status.DISMISSED, "Parsed": Status.PARSED}


@pytest.mark.parametrize("role", ["editor", "auditor"])
def test_other_roles_cannot_dismiss(role: str) -> None:
    message = a_message("Strange report")
    client = Client()
    client.force_login(user_with_roles(role))
    client.post(reverse("admin:campaigns_bouncemessage_dismiss", args=[message.pk]))
    client.post(reverse(LIST), {"action": "dismiss_selected", "_selected_action": [message.pk]})
    message.refresh_from_db()
    assert message.status == Status.NEEDS_REVIEW


def test_dismissing_twice_moves_nothing_the_second_time() -> None:
    message = a_message("Strange report")
    by = UserFactory.create()
    assert bounce_message_dismiss(message_ids=[message.pk], by=by) == 1
    assert bounce_message_dismiss(message_ids=[message.pk], by=by) == 0


def test_the_sidebar_counts_the_messages_waiting_for_review(auditor: Client) -> None:
    request = RequestFactory().get("/admin/")
    assert bounce_review_badge(request) == ""
    a_message("One")
    a_message("Two")
    a_message("Parsed", Status.PARSED)
    assert bounce_review_badge(request) == "2"
    page = auditor.get(reverse("admin:index")).content.decode()
    assert "Bounce messages" in page and "Suppressions" in page
