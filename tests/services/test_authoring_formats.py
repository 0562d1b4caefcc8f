"""Bodies in rich text, Markdown and HTML made into email HTML: real pastes, real Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django import Settings

from campaigns.services.authoring import body_convert, body_to_html
from campaigns.services.authoring.formats import html_to_text
from campaigns.services.template_engine import TemplateProblem

INPUTS = Path(__file__).parent / "authoring_inputs"
GOOGLE_DOCS = (INPUTS / "google_docs.html").read_text()
WORD = (INPUTS / "word.html").read_text()
MARKDOWN = (INPUTS / "newsletter.md").read_text()


def test_a_google_docs_paste_keeps_its_meaning_and_loses_the_editor_styling() -> None:
    result = body_to_html(body=GOOGLE_DOCS, body_format="richtext")

    assert "docs-internal-guid" not in result.html
    assert "style=" not in result.html and "<span" not in result.html
    # Bold and italic were spans with font-weight / font-style: they survive as elements.
    assert "<strong>new reports</strong>" in result.html
    assert "<em> are live</em>" in result.html
    assert "<h2>Spring update</h2>" in result.html
    # The whole paste is not bold: Google's wrapper <b> is gone, not kept as bold.
    assert "<b>" not in result.html


def test_a_google_docs_paste_reports_what_was_removed_in_sentences() -> None:
    removed = body_to_html(body=GOOGLE_DOCS, body_format="richtext").removed

    assert "Removed a <b> element (its text is kept)" in removed
    assert "Removed 7 <span> elements (their text is kept)" in removed
    assert "Removed the style attribute on <p> (2×)" in removed
    assert "Removed the dir attribute on <h2>" in removed


def test_personalisation_tags_survive_sanitising_also_inside_a_link() -> None:
    html = body_to_html(body=GOOGLE_DOCS, body_format="richtext").html

    assert "Hi {{ recipient.first_name }}, the " in html
    assert 'href="https://example.com/reports?city={{ recipient.attributes.city|urlencode }}"' in (
        html
    )


def test_a_word_paste_loses_office_markup_conditional_comments_and_drawn_bullets() -> None:
    result = body_to_html(body=WORD, body_format="richtext")

    assert result.html.startswith("<p><b>Dear {{ recipient.first_name }},</b></p>")
    for leftover in ("o:p", "mso-", "MsoNormal", "<!--", "[if", "Symbol", "·", "<style"):
        assert leftover not in result.html
    assert "<p>Bring your badge</p>" in result.html
    assert '<a href="{{ unsubscribe_url }}">Stop these emails</a>' in result.html
    assert "Removed 4 <o:p> elements (their text is kept)" in result.removed
    assert "Removed a <style> element with its content" in result.removed
    assert "Removed 5 comments" in result.removed


def test_script_and_javascript_links_are_removed_and_said() -> None:
    result = body_to_html(
        body='<p onclick="x()">Hi</p><script>alert(1)</script><a href="javascript:alert(1)">x</a>',
        body_format="richtext",
    )

    assert result.html == "<p>Hi</p><a>x</a>"
    assert "Removed a <script> element with its content" in result.removed
    assert "Removed the onclick attribute on <p>" in result.removed
    assert "Removed the href attribute on <a>" in result.removed


def test_markdown_renders_tables_images_and_links_with_tags_unchanged() -> None:
    result = body_to_html(body=MARKDOWN, body_format="markdown")

    assert '<h1>Hello {{ recipient.first_name|default:"there" }}</h1>' in result.html
    assert "<table>" in result.html and '<th style="text-align:center">Status</th>' in result.html
    # A tag's "|" inside a table cell does not split the cell.
    assert '<td>{{ recipient.attributes.manager|default:"the team" }}</td>' in result.html
    assert (
        '<img src="https://cdn.example.com/chart.png" alt="Chart of this month\'s sign-ups">'
        in result.html
    )
    assert (
        '<a href="https://app.example.com/d/{{ recipient.attributes.account_id }}?ref=email">'
        in result.html
    )
    assert result.removed == []


def test_raw_html_is_returned_as_written() -> None:
    html = '<div style="color:red" onclick="x()"><script>1</script></div>'
    assert body_to_html(body=html, body_format="html").html == html


def test_a_huge_body_is_refused_before_any_work(settings: Settings) -> None:
    settings.OPSDASH_BODY_MAX_BYTES = 2048
    with pytest.raises(TemplateProblem, match=r"^Body: it is 3 KB, over the limit of 2 KB"):
        body_to_html(body="x" * 3000, body_format="markdown")


def test_switching_markdown_to_html_and_back_keeps_the_content() -> None:
    html = body_convert(body=MARKDOWN, from_format="markdown", to_format="html")
    back = body_convert(body=html, from_format="html", to_format="markdown")

    assert back.startswith('# Hello {{ recipient.first_name|default:"there" }}')
    assert "**{{ recipient.attributes.city }}**" in back
    assert "![Chart of this month's sign-ups](https://cdn.example.com/chart.png)" in back
    assert (
        "[Open your dashboard](https://app.example.com/d/{{ recipient.attributes.account_id }}"
        in (back)
    )
    assert "Reports | live |" in back


def test_switching_html_to_rich_text_sanitises_it() -> None:
    converted = body_convert(
        body='<p style="color:red">Hi {{ recipient.first_name }}</p><script>1</script>',
        from_format="html",
        to_format="richtext",
    )
    assert converted == "<p>Hi {{ recipient.first_name }}</p>"


def test_the_text_part_reads_as_text_with_tags_kept() -> None:
    html = body_to_html(body=MARKDOWN, body_format="markdown").html
    text = html_to_text(html)

    assert text.startswith('# Hello {{ recipient.first_name|default:"there" }}')
    assert "<" not in text
    assert "chart.png" not in text  # images are left out of the text part
    assert "{{ recipient.attributes.account_id }}" in text
