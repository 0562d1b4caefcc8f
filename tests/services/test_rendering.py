from __future__ import annotations

import re
import tracemalloc

import pytest
from pytest_django import Settings

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


# --- What a template may use, and what a render may cost ------------------------------------

SAMPLE = {"email": "a@example.com", "first_name": "Ann", "last_name": "Lee", "attributes": {}}


def escaped(text: str) -> str:
    return re.escape(text)


@pytest.mark.parametrize(
    "name", ["ljust", "rjust", "center", "stringformat", "safe", "add", "make_list", "urlize"]
)
def test_filters_outside_the_allow_list_are_refused_naming_the_field_and_the_filter(
    name: str,
) -> None:
    with pytest.raises(TemplateProblem, match=escaped(f"Subject: the filter '{name}' is not")):
        compile_basic(subject=f'{{{{ "x"|{name}:"20000000" }}}}')


def test_the_twenty_megabyte_ljust_is_refused_at_compile() -> None:
    with pytest.raises(TemplateProblem) as caught:
        template_compile('{{ "x"|ljust:"20000000" }}', label="Subject")
    assert str(caught.value) == "Subject: the filter 'ljust' is not allowed."


def test_a_filter_that_does_not_exist_is_named_as_such() -> None:
    with pytest.raises(TemplateProblem, match="Text body: there is no filter 'uper'"):
        template_compile("{{ recipient.first_name|uper }}", label="Text body")


@pytest.mark.parametrize(
    "source",
    [
        "{% lorem 9999 w %}",
        "{% url 'admin:index' %}",
        "{% widthratio 1 1 99999999 %}",
        "{% autoescape off %}x{% endautoescape %}",
        "{% cycle 'a' 'b' %}",
        "{% csrf_token %}",
        "{% filter upper %}x{% endfilter %}",
        "{% load static %}",
        "{% include 'admin/base.html' %}",
        "{% extends 'x.html' %}",
        "{% debug %}",
    ],
)
def test_tags_outside_the_allow_list_are_refused_naming_the_field_and_the_tag(
    source: str,
) -> None:
    tag = source.split()[1]
    with pytest.raises(TemplateProblem, match=escaped(f"HTML body: the tag '{tag}' is not")):
        template_compile(source, label="HTML body")


def test_a_filter_or_tag_is_refused_wherever_it_sits() -> None:
    for source in (
        '{% if recipient.first_name|ljust:"9" %}{% endif %}',
        '{% for c in recipient.first_name|center:"9" %}{% endfor %}',
        '{% with x=recipient.first_name|rjust:"9" %}{% endwith %}',
        '{% firstof recipient.first_name|ljust:"9" "there" %}',
        '{% if 1 %}{% for c in "ab" %}{% lorem %}{% endfor %}{% endif %}',
    ):
        with pytest.raises(TemplateProblem, match="is not allowed"):
            template_compile(source, label="Text body")


def test_every_allowed_tag_and_filter_renders() -> None:
    text = (
        "{# a note #}{% comment %}for editors{% endcomment %}"
        "{% if recipient.first_name %}Hi {{ recipient.first_name|upper }}"
        "{% elif recipient.email %}Hi{% else %}Hello{% endif %} "
        "{% firstof recipient.last_name 'there' %} "
        "{% with n=recipient.full_name %}{{ n|lower }}|{{ n|title }}|{{ n|capfirst }}{% endwith %} "
        "{% for c in recipient.first_name %}{{ c }}{% empty %}none{% endfor %} "
        "{{ recipient.email|truncatechars:5 }}|{{ recipient.full_name|truncatewords:1 }}|"
        "{{ recipient.first_name|slice:':2' }}|{{ recipient.first_name|first }}"
        "{{ recipient.first_name|last }}|{{ recipient.first_name|length }}|"
        "{{ recipient.first_name|join:'-' }}|{{ '1.234'|floatformat:2 }}|"
        "{{ recipient.attributes.x|default:'d' }}|{{ recipient.attributes.n|default_if_none:'n' }}|"
        "{{ 1|pluralize:'y,ies' }}{{ 2|pluralize }}|{{ recipient.first_name|yesno:'yes,no' }}|"
        "{{ recipient.attributes.tag|escape }}|{{ 'a b'|urlencode }}|"
        "{% verbatim %}{{ raw }}{% endverbatim %}"
        "{% templatetag openbrace %}|{% now 'Y' as year %}{{ year|length }}"
    )
    html = (
        "{% spaceless %}<p> <b>{{ recipient.attributes.lines|linebreaksbr }}</b> </p>"
        "{% endspaceless %}{{ recipient.first_name|linebreaks }}"
    )
    dated = (
        "{% now 'Y' as y %}{{ y|length }}"
        "{{ recipient.attributes.n|date:'Y' }}{{ recipient.attributes.n|time:'H' }}"
    )
    compiled = compile_basic(text_body=text, html_body=html, subject=dated)
    rendered = message_render(
        compiled,
        recipient={**SAMPLE, "attributes": {"n": None, "tag": "<b>", "lines": "a\nb"}},
        unsubscribe_url="#",
    )
    assert rendered.subject == "4"
    assert rendered.text == (
        "Hi ANN Lee ann lee|Ann Lee|Ann Lee Ann a@ex…|Ann …|An|An|3|Ann|1.23|d|n|ys|yes|"
        "&lt;b&gt;|a%20b|{{ raw }}{|4"
    )
    assert rendered.html == "<p><b>a<br>b</b></p><p>Ann</p>"


def test_join_joins_lists_and_leaves_text_whole_so_a_chain_cannot_grow_it() -> None:
    # Django's join puts the separator between a text's letters: six in a row would make
    # "Paris" about 430 million characters long before any size check could see it.
    chain = '|join:"xxxxxxxxxxxxxxxxxxxx"' * 6
    compiled = compile_basic(
        text_body="{{ recipient.attributes.city"
        + chain
        + " }}|{{ recipient.attributes.tags"
        + chain
        + " }}|{{ unsubscribe_url"
        + chain
        + " }}"
    )
    rendered = message_render(
        compiled,
        recipient={**SAMPLE, "attributes": {"city": "Paris", "tags": ["a", "b"]}},
        unsubscribe_url="https://example.com/u",
    )
    assert rendered.text == "Paris|axxxxxxxxxxxxxxxxxxxxb|https://example.com/u"


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{{ recipient.first_name|truncatechars:5000 }}", "'truncatechars' takes a number up"),
        ("{{ recipient.first_name|truncatechars:recipient.email }}", "'truncatechars' takes"),
        ("{{ recipient.first_name|truncatewords:201 }}", "'truncatewords' takes a number up"),
        ("{{ recipient.first_name|floatformat:'100' }}", "'floatformat' takes a number of"),
        ("{{ recipient.first_name|floatformat:'1_000' }}", "'floatformat' takes a number of"),
        ("{{ recipient.first_name|slice:'::5000' }}", "'slice' takes a slice"),
        ("{{ recipient.first_name|join:recipient.email }}", "'join' takes a separator"),
        ("{{ recipient.first_name|join:'" + "x" * 21 + "' }}", "'join' takes a separator"),
    ],
)
def test_arguments_that_size_the_output_are_small_literals(source: str, needle: str) -> None:
    with pytest.raises(TemplateProblem, match=escaped(f"Text body: the filter {needle}")):
        template_compile(source, label="Text body")


def test_arguments_at_their_bound_are_accepted() -> None:
    template_compile(
        "{{ recipient.first_name|truncatechars:1000 }}{{ recipient.first_name|truncatewords:200 }}"
        "{{ recipient.first_name|floatformat:'-20g' }}{{ recipient.first_name|slice:'-1000:1000' }}"
        "{{ recipient.first_name|join:'" + "x" * 20 + "' }}",
        label="Text body",
    )


def test_five_nested_loops_are_refused_and_two_are_the_most() -> None:
    def nested(depth: int) -> str:
        return '{% for a in "abcdefghij" %}' * depth + "x" + "{% endfor %}" * depth

    with pytest.raises(TemplateProblem, match="Text body: loops nest at most 2 deep"):
        template_compile(nested(5), label="Text body")
    with pytest.raises(TemplateProblem, match="loops nest at most 2 deep"):
        template_compile(
            "{% for a in 'ab' %}{% if a %}{% for b in 'ab' %}{% with c=b %}"
            "{% for d in 'ab' %}{% endfor %}{% endwith %}{% endfor %}{% endif %}{% endfor %}",
            label="Text body",
        )
    rendered = message_render(
        compile_basic(text_body=nested(2)), recipient=SAMPLE, unsubscribe_url="#"
    )
    assert rendered.text == "x" * 100


def test_tags_nested_beyond_the_bound_are_refused() -> None:
    with pytest.raises(TemplateProblem, match="tags nest at most 20 deep"):
        template_compile("{% if 1 %}" * 21 + "{% endif %}" * 21, label="Text body")
    with pytest.raises(TemplateProblem, match="Text body"):
        template_compile("{% if 1 %}" * 3000 + "{% endif %}" * 3000, label="Text body")


def test_loop_passes_are_bounded_at_render_by_the_recipients_data() -> None:
    compiled = compile_basic(
        text_body="{% for a in recipient.attributes.s %}{% for b in recipient.attributes.s %}"
        "{% endfor %}{% endfor %}"
    )
    small = {**SAMPLE, "attributes": {"s": "a" * 99}}
    message_render(compiled, recipient=small, unsubscribe_url="#")  # 99 + 99 * 99 passes
    large = {**SAMPLE, "attributes": {"s": "a" * 200}}
    with pytest.raises(TemplateProblem, match="Text body: the loops run more than 10,000 times"):
        message_render(compiled, recipient=large, unsubscribe_url="#")


def test_a_part_over_its_size_limit_fails_at_render_naming_it(settings: Settings) -> None:
    settings.OPSDASH_TEMPLATE_MAX_BYTES = 2000
    settings.OPSDASH_TEMPLATE_SUBJECT_MAX_BYTES = 100
    compiled = compile_basic(
        subject="Hi {{ recipient.first_name }}", html_body="<p>{{ recipient.last_name }}</p>"
    )
    message_render(compiled, recipient=SAMPLE, unsubscribe_url="#")
    with pytest.raises(TemplateProblem, match="Subject: the rendered text is over the limit"):
        message_render(compiled, recipient={**SAMPLE, "first_name": "a" * 100}, unsubscribe_url="#")
    with pytest.raises(TemplateProblem, match="HTML body: the rendered text is over the limit"):
        message_render(compiled, recipient={**SAMPLE, "last_name": "é" * 1000}, unsubscribe_url="#")


def test_a_loop_stops_at_the_size_limit_instead_of_building_the_text_first() -> None:
    compiled = compile_basic(
        text_body="{% for a in recipient.attributes.s %}{{ recipient.attributes.s }}{% endfor %}"
    )
    recipient = {**SAMPLE, "attributes": {"s": "a" * 5000}}  # 25 MB if built
    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem, match="Text body: the rendered text is over"):
            message_render(compiled, recipient=recipient, unsubscribe_url="#")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"subject": "x" * 2000}, "Subject: the rendered text is over the limit of 1,024 bytes"),
        ({"html_body": "<p>" + "x" * 600_000}, "HTML body: the rendered text is over the limit"),
        (
            {
                "text_body": "{% for a in '" + "x" * 101 + "' %}{% for b in '" + "x" * 99 + "' %}"
                "{% endfor %}{% endfor %}"
            },
            "Text body: the loops run more than",
        ),
        ({"text_body": "{% for a, b in 'xy' %}{% endfor %}"}, "Text body: the template fails"),
    ],
)
def test_a_campaign_whose_sample_render_is_over_a_limit_does_not_compile(
    fields: dict[str, str], needle: str
) -> None:
    with pytest.raises(TemplateProblem, match=escaped(needle)):
        compile_basic(**fields)


def test_a_template_renders_only_within_a_budget() -> None:
    from django.template import Context

    template = template_compile("{% for a in 'ab' %}{{ a }}{% endfor %}", label="Text body")
    with pytest.raises(TemplateProblem, match="renders only through part_render"):
        template.render(Context({}))
