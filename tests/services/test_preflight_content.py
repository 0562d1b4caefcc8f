"""The message checks: unsubscribe headers as the channel composes them, size, text, links."""

from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.models import Campaign
from campaigns.services.preflight import PreflightReport, Severity, preflight_run
from campaigns.services.preflight.content import composed_headers, sample_compose

pytestmark = pytest.mark.django_db


def campaign(**fields: object) -> Campaign:
    values: dict[str, object] = {
        "name": "News",
        "subject": "Hi",
        "from_email": "news@example.com",
        "text_body": "Hello {{ recipient.first_name }}",
        "body_format": Campaign.BodyFormat.HTML,
        "body": '<p>Hi</p><a href="https://example.com/a">a</a>',
    }
    values.update(fields)
    return Campaign(**values)


def found(report: PreflightReport) -> dict[str, Severity]:
    return {finding.code: finding.severity for finding in report.findings}


def test_the_smtp_message_carries_one_click_unsubscribe(settings: Settings) -> None:
    settings.OPSDASH_PUBLIC_URL = "https://mail.example.com"
    codes = found(preflight_run(campaign=campaign()))
    assert codes["list_unsubscribe_ok"] is Severity.OK
    assert "list_unsubscribe_not_https" not in codes
    headers = sample_compose(campaign()).headers
    assert headers["list-unsubscribe"].startswith("<https://mail.example.com/")
    assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"


def test_an_unsubscribe_address_without_https_warns(settings: Settings) -> None:
    settings.OPSDASH_PUBLIC_URL = "http://localhost:8000"
    report = preflight_run(campaign=campaign())
    assert found(report)["list_unsubscribe_not_https"] is Severity.WARN
    assert report.blocking == []


def test_headers_are_read_from_each_channels_form() -> None:
    raw = b"Subject: x\r\nList-Unsubscribe: <https://u>\r\n\r\nbody"
    assert composed_headers(raw)["list-unsubscribe"] == "<https://u>"
    postmark = ("token", {"Headers": [{"Name": "List-Unsubscribe-Post", "Value": "x"}]})
    assert composed_headers(postmark) == {"list-unsubscribe-post": "x"}


def test_html_over_gmails_clipping_size_warns() -> None:
    big = "<p>" + "x" * (103 * 1024) + "</p>"
    finding = next(
        f for f in preflight_run(campaign=campaign(body=big)).findings if f.code == "html_clipped"
    )
    assert finding.severity is Severity.WARN and "102 KB" in finding.message


def test_html_under_the_limit_is_fine() -> None:
    assert found(preflight_run(campaign=campaign()))["html_size_ok"] is Severity.OK


def test_an_empty_text_body_is_written_from_the_html_and_said_so() -> None:
    codes = found(preflight_run(campaign=campaign(text_body="")))
    assert codes["text_generated"] is Severity.OK
    assert found(preflight_run(campaign=campaign()))["text_ok"] is Severity.OK


def test_a_campaign_without_any_body_is_refused_as_unrenderable() -> None:
    codes = found(preflight_run(campaign=campaign(text_body="", body="")))
    assert codes["content_unrenderable"] is Severity.BLOCK


def test_relative_and_script_links_warn_and_name_them() -> None:
    html = (
        '<a href="https://example.com/">ok</a><a href="mailto:help@example.com">mail</a>'
        '<a href="/offers">rel</a><a href="javascript:alert(1)">js</a><a href="#top">top</a>'
        '<a href="{{ unsubscribe_url }}">unsubscribe</a>'
    )
    finding = next(
        f
        for f in preflight_run(campaign=campaign(body=html)).findings
        if f.group == "Message" and f.code.startswith("links")
    )
    assert finding.code == "links_not_absolute" and finding.severity is Severity.WARN
    assert "(3 of 6)" in finding.message
    for link in ("/offers", "javascript:alert(1)", "#top"):
        assert f"“{link}”" in finding.message


def test_absolute_links_pass() -> None:
    assert found(preflight_run(campaign=campaign()))["links_ok"] is Severity.OK


def test_content_checks_never_block_a_product_message() -> None:
    # The product always adds the unsubscribe headers: a campaign's own content blocks nothing.
    report = preflight_run(campaign=campaign(text_body="", body="<a href='x'>x</a>"))
    assert report.blocking == []
