"""Layout + body compiled into the message a send freezes: inlined CSS, the text part, the
preview text, the unsubscribe footer, and tags that come out as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from campaigns.services.authoring import content_compose
from campaigns.services.authoring.compose import DEFAULT_FOOTER_TEXT
from campaigns.services.rendering import campaign_compile, message_render
from campaigns.services.template_engine import TemplateProblem
from tests.factories import shipped_layout

pytestmark = pytest.mark.django_db

MARKDOWN = (Path(__file__).parent / "authoring_inputs" / "newsletter.md").read_text()
ADA = {"email": "ada@example.com", "first_name": "Ada", "last_name": "L", "attributes": {}}


def house(**fields: str):  # type: ignore[no-untyped-def]
    layout = shipped_layout()
    for name, value in fields.items():
        setattr(layout, name, value)
    return layout


def style_of(html: str, css_class: str) -> str:
    match = re.search(rf'class="{css_class}"[^>]*style="([^"]*)"', html)
    assert match is not None, f"no inline style on .{css_class}"
    return match.group(1)


def test_the_house_layout_inlines_its_css_and_keeps_the_media_queries() -> None:
    composed = content_compose(
        body=MARKDOWN, body_format="markdown", layout=house(), preheader="", text_body=""
    )
    html = composed.html

    assert "font-family: Arial" in style_of(html, "content")
    assert "width: 600px" in style_of(html, "container")
    assert 'width="600"' in html and 'role="presentation"' in html
    # Media queries cannot be inlined: they stay in a <style>, for the clients that read it.
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    assert style is not None
    assert "@media (prefers-color-scheme: dark)" in style.group(1)
    assert "@media (max-width: 620px)" in style.group(1)
    assert ".content { padding" not in style.group(1)  # plain rules went into style=""
    assert '<meta name="color-scheme" content="light dark">' in html


def test_the_layout_fills_its_brand_and_keeps_per_recipient_links_as_tags() -> None:
    layout = house(brand_color="#aa3300", legal_address="Opsdash Ltd\n1 Example Street")
    html = content_compose(
        body=MARKDOWN, body_format="markdown", layout=layout, preheader="", text_body=""
    ).html

    assert "background-color: #aa3300" in style_of(html, "header")
    assert "Opsdash Ltd<br>1 Example Street" in html
    assert DEFAULT_FOOTER_TEXT in html  # footer_text blank: the default line
    assert re.search(r'<a href="\{\{ unsubscribe_url \}\}"[^>]*>Unsubscribe</a>', html)
    assert re.search(r'<a href="\{\{ web_version_url \}\}"[^>]*>View in browser</a>', html)
    assert "<title>{{ campaign.name }}</title>" in html


def test_tags_survive_markdown_and_inlining_inside_attributes() -> None:
    html = content_compose(
        body=MARKDOWN, body_format="markdown", layout=house(), preheader="", text_body=""
    ).html

    assert 'href="https://app.example.com/d/{{ recipient.attributes.account_id }}?ref=email"' in (
        html
    )
    assert '<td>{{ recipient.attributes.manager|default:"the team" }}</td>' in html


def test_the_preview_text_goes_into_the_layouts_hidden_span_escaped() -> None:
    html = content_compose(
        body="Hi",
        body_format="markdown",
        layout=house(),
        preheader="News for {{ recipient.first_name }} & friends",
        text_body="",
    ).html

    span = re.search(r'<span class="preheader" style="display: none;[^"]*">([^<]*)</span>', html)
    assert span is not None
    assert span.group(1) == "News for {{ recipient.first_name }} &amp; friends"


def test_without_a_layout_the_preview_text_is_prepended_hidden() -> None:
    html = content_compose(
        body='<p>Hi</p><a href="{{ unsubscribe_url }}">Leave</a>',
        body_format="html",
        layout=None,
        preheader="Spring news",
        text_body="",
    ).html

    assert html.startswith('<span style="display: none;')
    assert ">Spring news</span><p>Hi</p>" in html


def test_raw_html_without_an_unsubscribe_link_gets_the_default_footer_once() -> None:
    bare = content_compose(
        body="<p>Hi</p>", body_format="html", layout=None, preheader="", text_body=""
    )
    own = content_compose(
        body='<p>Hi <a href="{{ unsubscribe_url }}">stop</a></p>',
        body_format="html",
        layout=None,
        preheader="",
        text_body="",
    )

    assert bare.html.count("{{ unsubscribe_url }}") == 1
    assert DEFAULT_FOOTER_TEXT in bare.html and "{{ web_version_url }}" in bare.html
    assert own.html == '<p>Hi <a href="{{ unsubscribe_url }}">stop</a></p>'


def test_a_layout_without_an_unsubscribe_link_gets_the_footer_inside_its_body() -> None:
    layout = house(html="<html><body><div>{{ content }}</div></body></html>")
    html = content_compose(
        body="Hi", body_format="markdown", layout=layout, preheader="", text_body=""
    ).html

    assert html.index(DEFAULT_FOOTER_TEXT) < html.index("</body>")


def test_the_text_part_is_written_from_the_html_unless_one_was_written() -> None:
    generated = content_compose(
        body=MARKDOWN, body_format="markdown", layout=house(), preheader="Hidden", text_body=""
    ).text
    written = content_compose(
        body=MARKDOWN, body_format="markdown", layout=house(), preheader="", text_body="Mine"
    ).text

    assert 'Hello {{ recipient.first_name|default:"there" }}' in generated
    assert "[Unsubscribe]({{ unsubscribe_url }})" in generated
    for noise in ("@media", "font-family", "<", "Hidden", "chart.png"):
        assert noise not in generated
    assert written == "Mine"


def test_the_compiled_message_renders_per_recipient_with_escaping() -> None:
    composed = content_compose(
        body="Hi **{{ recipient.first_name }}**",
        body_format="markdown",
        layout=house(),
        preheader="",
        text_body="",
    )
    compiled = campaign_compile(
        campaign_id=1,
        name="News",
        subject="Hi",
        from_email="team@example.com",
        reply_to="",
        text_body=composed.text,
        html_body=composed.html,
    )
    rendered = message_render(
        compiled,
        recipient={**ADA, "first_name": "<Ada>"},
        unsubscribe_url="https://ops.example.com/u/t/",
        web_version_url="https://ops.example.com/m/t/",
    )

    assert "<strong>&lt;Ada&gt;</strong>" in rendered.html
    assert 'href="https://ops.example.com/m/t/"' in rendered.html
    assert "Hi <Ada>" in rendered.text


def test_a_tag_between_table_rows_is_refused_rather_than_moved() -> None:
    body = (
        "<table>{% for x in recipient.attributes.items %}"
        "<tr><td>{{ x }}</td></tr>{% endfor %}</table>"
    )
    with pytest.raises(TemplateProblem, match=r"^Body: the tag “\{% endfor %\}” sits where"):
        content_compose(body=body, body_format="richtext", layout=None, preheader="", text_body="")


def test_a_broken_tag_in_the_preview_text_is_named() -> None:
    with pytest.raises(TemplateProblem, match=r"^Preview text: "):
        content_compose(
            body="Hi", body_format="markdown", layout=None, preheader="{{ nope }}", text_body=""
        )
