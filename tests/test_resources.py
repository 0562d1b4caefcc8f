"""Exports: every cell a spreadsheet would run as a formula is escaped, in CSV and in XLSX."""

from __future__ import annotations

import csv
import io
from typing import Any

import openpyxl
import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from import_export.formats.base_formats import CSV, XLSX

from campaigns.models import Delivery, Send
from campaigns.resources import DeliveryResource, RecipientResource, escape_formula
from tests.factories import CampaignFactory, RecipientFactory

pytestmark = pytest.mark.django_db

DANGEROUS = ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_escape_formula_prefixes_every_dangerous_start(value: str) -> None:
    assert escape_formula(value) == "'" + value


# What a spreadsheet skips before the sign: spaces, tabs, no-break spaces, line breaks.
LEADING_BLANKS = [" ", "  ", "\t", "\xa0", "\u202f", "\r\n", "\n", " \xa0\t\r\n", "\ufeff"]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
@pytest.mark.parametrize("blank", LEADING_BLANKS)
def test_escape_formula_looks_past_leading_blanks_for_each_sign(prefix: str, blank: str) -> None:
    value = f'{blank}{prefix}HYPERLINK("http://evil")'
    assert escape_formula(value) == "'" + value


@pytest.mark.parametrize("value", [" Ada", "\xa0ada@example.com", "a=b", "Ann-Marie", "x@y"])
def test_escape_formula_leaves_blanks_before_plain_text(value: str) -> None:
    assert escape_formula(value) == value


def test_exports_escape_a_formula_hidden_behind_blanks_in_csv_and_xlsx() -> None:
    RecipientFactory.create(first_name="\xa0=cmd|' /C calc'!A0", last_name="\n+1+1")
    rows = list(csv.DictReader(io.StringIO(CSV().export_data(RecipientResource().export()))))
    assert (rows[0]["first_name"], rows[0]["last_name"]) == ("'\xa0=cmd|' /C calc'!A0", "'\n+1+1")
    header, first = xlsx_rows(XLSX().export_data(RecipientResource().export()))[:2]
    record = dict(zip(header, first, strict=True))
    assert record["first_name"].startswith("'") and record["last_name"].startswith("'")


@pytest.mark.parametrize("value", ["Ada", "ada@example.com", "", 5, None])
def test_escape_formula_leaves_everything_else(value: Any) -> None:
    assert escape_formula(value) == value


def xlsx_rows(content: bytes) -> list[tuple[Any, ...]]:
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", f"{cell.coordinate} is a formula"
    return [tuple(cell.value for cell in row) for row in sheet.iter_rows()]


def test_recipient_exports_escape_formulas_in_csv_and_xlsx() -> None:
    RecipientFactory.create(email="=cmd@example.com", first_name="+Ada", last_name="@Lovelace",
                     attributes={"note": "=HYPERLINK(1)"})  # fmt: skip
    dataset = RecipientResource().export()

    rows = list(csv.DictReader(io.StringIO(CSV().export_data(dataset))))
    assert (rows[0]["email"], rows[0]["first_name"], rows[0]["last_name"]) == (
        "'=cmd@example.com",
        "'+Ada",
        "'@Lovelace",
    )
    header, first = xlsx_rows(XLSX().export_data(RecipientResource().export()))[:2]
    record = dict(zip(header, first, strict=True))
    assert (record["email"], record["first_name"]) == ("'=cmd@example.com", "'+Ada")


def test_the_admin_export_of_recipients_is_escaped(admin_client: Client) -> None:
    RecipientFactory.create(email="=cmd@example.com", first_name="-Ada")
    for index, parse in ((0, None), (1, xlsx_rows)):
        response = admin_client.post(
            reverse("admin:campaigns_recipient_export"), {"format": str(index), "resource": "0"}
        )
        assert response.status_code == 200
        content = (
            b"".join(response.streaming_content)
            if isinstance(response, StreamingHttpResponse)
            else response.content
        )
        if parse is None:
            assert "'=cmd@example.com" in content.decode()
            assert "'-Ada" in content.decode()
        else:
            assert parse(content)[1][:2] == ("'=cmd@example.com", "'-Ada")


def test_the_delivery_log_escapes_smtp_text_in_xlsx(admin_client: Client) -> None:
    send = Send.objects.create(
        campaign=CampaignFactory.create(name="=Spring"), occurrence_key="once"
    )
    Delivery.objects.create(
        send=send, recipient=RecipientFactory.create(email="x@example.com"), status="failed",
        last_error="@evil", smtp_response="+550",
    )  # fmt: skip
    response = admin_client.get(reverse("admin:campaigns_recipient_export_delivery_log_xlsx"))
    header, row = xlsx_rows(response.content)[:2]
    record = dict(zip(header, row, strict=True))
    assert (record["campaign"], record["last_error"], record["smtp_response"]) == (
        "'=Spring",
        "'@evil",
        "'+550",
    )


def test_the_delivery_log_can_be_limited_to_one_send() -> None:
    campaign = CampaignFactory.create()
    first = Send.objects.create(campaign=campaign, occurrence_key="a")
    second = Send.objects.create(campaign=campaign, occurrence_key="b")
    recipient = RecipientFactory.create()
    Delivery.objects.create(send=first, recipient=recipient)
    Delivery.objects.create(send=second, recipient=recipient)

    dataset = DeliveryResource().export(queryset=Delivery.objects.filter(send=second))
    assert [int(row[1]) for row in dataset] == [second.pk]
    assert dataset.headers[:4] == ["id", "send", "campaign", "recipient"]


def test_the_delivery_log_says_why_a_row_was_skipped_in_words() -> None:
    send = Send.objects.create(campaign=CampaignFactory.create(), occurrence_key="once")
    skipped, sent = RecipientFactory.create(), RecipientFactory.create()
    Delivery.objects.create(
        send=send, recipient=skipped, status=Delivery.Status.SKIPPED,
        skip_reason=Delivery.SkipReason.CANCELLED,
    )  # fmt: skip
    Delivery.objects.create(send=send, recipient=sent, status=Delivery.Status.SENT)

    dataset = DeliveryResource().export(queryset=Delivery.objects.filter(send=send).order_by("id"))

    reasons = [dict(zip(dataset.headers, row, strict=True))["skip_reason"] for row in dataset]
    assert reasons == [Delivery.SkipReason.CANCELLED.label, ""]
