from __future__ import annotations

import pytest

from campaigns.services.rendering import (
    CompiledCampaign,
    TemplateProblem,
    address_check,
    campaign_compile,
    header_value_check,
    message_build,
    message_render,
    recipient_fields,
    sample_recipient_fields,
)
from campaigns.services.template_engine import template_compile


def compile_basic(**overrides: str) -> CompiledCampaign:
    fields = {
        "name": "News",
        "subject": "Hi {{ recipient.first_name }}",
        "from_email": "team@example.com",
        "reply_to": "",
        "text_body": "Hello",
        "html_body": "",
    }
    fields.update(overrides)
    return campaign_compile(campaign_id=1, **fields)


def test_it_renders_recipient_fields_attributes_and_escapes_html() -> None:
    compiled = compile_basic(
        text_body="{{ recipient.full_name }} in {{ recipient.attributes.city }}",
        html_body="<p>{{ recipient.first_name }}</p>",
    )
    rendered = message_render(
        compiled,
        recipient={
            "email": "a@example.com",
            "first_name": "<b>Ann</b>",
            "last_name": "Lee",
            "attributes": {"city": "Oslo"},
        },
        unsubscribe_url="https://x/u/1/",
    )
    assert rendered.subject == "Hi <b>Ann</b>"
    assert rendered.text == "<b>Ann</b> Lee in Oslo"
    assert rendered.html == "<p>&lt;b&gt;Ann&lt;/b&gt;</p>"


def test_a_stored_recipient_and_the_sample_render_through_the_same_fields() -> None:
    from campaigns.models import Recipient

    text = "{{ recipient.full_name }} <{{ recipient.email }}> {{ recipient.attributes.city }}"
    compiled = compile_basic(text_body=text)
    jane = Recipient(email="jane@example.com", first_name="Jane", last_name="Doe")
    jane.attributes = {"city": "Oslo"}
    stored = message_render(compiled, recipient=recipient_fields(jane), unsubscribe_url="#")
    sample = sample_recipient_fields(email="me@example.com")
    tried = message_render(compiled, recipient=sample, unsubscribe_url="#")

    assert stored.text == "Jane Doe <jane@example.com> Oslo"
    assert tried.text == "Sample Recipient <me@example.com> "
    assert recipient_fields(jane).keys() == sample.keys()


def test_it_refuses_a_template_that_does_not_compile_naming_the_field() -> None:
    with pytest.raises(TemplateProblem, match="HTML body: the template does not compile"):
        compile_basic(html_body="{% if %}")


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{{ recipient.shoe_size }}", "the recipient has no field 'shoe_size'"),
        ("{{ password }}", "unknown field {{ password }}"),
        ("{{ campaign.owner }}", "the campaign has no field 'owner'"),
    ],
)
def test_it_refuses_unknown_fields(source: str, needle: str) -> None:
    with pytest.raises(TemplateProblem, match=needle.replace("{", r"\{").replace("}", r"\}")):
        template_compile(source, label="Text body")


@pytest.mark.parametrize(
    "source",
    [
        "{% load static %}",
        "{% include 'admin/base.html' %}",
        "{% debug %}",
        "{% extends 'x.html' %}",
    ],
)
def test_it_refuses_tags_that_reach_outside_the_template(source: str) -> None:
    with pytest.raises(TemplateProblem):
        template_compile(source, label="HTML body")


def test_loop_variables_are_allowed() -> None:
    template_compile(
        "{% for k in recipient.attributes %}{{ k }}{{ forloop.counter }}{% endfor %}",
        label="Text body",
    )


def test_a_campaign_needs_a_body() -> None:
    with pytest.raises(TemplateProblem, match="write a text body, an HTML body, or both"):
        compile_basic(text_body="  ", html_body="")


@pytest.mark.parametrize("value", ["Hi\r\nBcc: x@example.com", "Hi\nthere", "Hi%0d%0aBcc: x"])
def test_header_values_with_line_breaks_are_refused(value: str) -> None:
    with pytest.raises(TemplateProblem, match="line breaks are not allowed"):
        header_value_check(value, label="Subject")


@pytest.mark.parametrize(
    "value", ["not-an-address", "a@", "Team <team@>", "x@example.com\nBcc: y@z.com"]
)
def test_invalid_sender_addresses_are_refused(value: str) -> None:
    with pytest.raises(TemplateProblem):
        address_check(value, label="From")


def test_a_display_name_sender_is_kept() -> None:
    assert address_check("Team <team@example.com>", label="From") == "Team <team@example.com>"


def test_the_message_carries_one_click_unsubscribe_and_a_stable_message_id() -> None:
    compiled = compile_basic(html_body="<p>x</p>")
    rendered = message_render(
        compiled,
        recipient={"email": "a@example.com", "first_name": "A\nB"},
        unsubscribe_url="https://x/u/t/",
    )
    message = message_build(
        compiled,
        rendered,
        to_email="a@example.com",
        to_name="A\nB",
        message_id="<send-1.rcpt-2@d>",
        unsubscribe_url="https://x/u/t/",
    )
    assert rendered.subject == "Hi A B"  # a newline in recipient data never splits a header
    assert message["List-Unsubscribe"] == "<https://x/u/t/>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<send-1.rcpt-2@d>"
    assert message.get_body(preferencelist=("html",)) is not None
