"""Broken tag marks are refused at save with their line and column; real email content is not."""

from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from campaigns.models import Campaign
from campaigns.services.rendering import TemplateProblem, campaign_compile, frozen_content_compile
from campaigns.services.template_engine import template_compile
from campaigns.services.template_syntax import template_syntax_problem
from tests.admin.helpers import campaign_form_data, user_with_roles

# A typical responsive email: minified and pretty CSS, media queries closing with "}}", widths
# in percent before "}", an id selector after "{", MSO conditional comments, an inline style.
RESPONSIVE_HTML = """<!doctype html>
<html lang="en" xmlns:v="urn:schemas-microsoft-com:vml">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ campaign.name }}</title>
<!--[if mso]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96</o:PixelsPerInch>
</o:OfficeDocumentSettings></xml><style>td,th,div,p,a{font-family:Arial,sans-serif}</style>
<![endif]-->
<style type="text/css">
  body { margin: 0; padding: 0; width: 100% !important; }
  table, td { border-collapse: collapse; mso-table-lspace: 0pt; mso-table-rspace: 0pt; }
  img { border: 0; height: auto; line-height: 100%; outline: none; }
  .button a { display: inline-block; padding: 12px 24px; color: #ffffff; }
  @font-face { font-family: 'Brand'; src: url(https://example.com/brand.woff2) format('woff2'); }
  @media only screen and (max-width:600px){.container{width:100%!important}.col{width:100%}}
  @media screen{#header{display:none}#footer{padding:0 10px}}
  @media (prefers-color-scheme: dark) {
    .dark-bg { background: #111827 !important; }
    .dark-text { color: #f9fafb !important; }
  }
  @keyframes pulse{0%{opacity:1}50%{opacity:.5}100%{opacity:1}}
  u + .body .gmail-fix { display: none; }
</style>
</head>
<body class="body" style="margin:0;padding:0;width:100%;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">
  <tr><td class="container" style="max-width:600px;width:100%;">
    <h1 style="font-size:24px;">Hello {{ recipient.first_name|default:"there" }},</h1>
    {% if recipient.attributes.city %}<p>News from {{ recipient.attributes.city }}.</p>{% endif %}
    {# the offer block is filled in each month #}
    <p>Our prices { as always } include VAT. Reply with {} if you like.</p>
    <p class="button"><a href="https://example.com/?utm_source=email">Read more</a></p>
    <p style="font-size:12px;">You receive this as {{ recipient.email }}.
    <a href="{{ unsubscribe_url }}">Unsubscribe</a> &copy; {% now "Y" %}</p>
  </td></tr>
</table>
<script type="application/ld+json">
{"@context": "http://schema.org", "@type": "EmailMessage",
 "potentialAction": {"@type": "ViewAction", "url": "https://example.com/"}}
</script>
</body>
</html>
"""

LEGITIMATE = [
    pytest.param(RESPONSIVE_HTML, id="responsive-email"),
    pytest.param("<style>p { color: red }</style><p>Hi</p>", id="css-rule"),
    pytest.param("<STYLE>\n.a{width:100%}\n.b { x: y }}\n</STYLE>", id="css-upper-case-tag"),
    pytest.param("<style>.x{width:{{ recipient.attributes.w }}%}</style>", id="css-with-field"),
    pytest.param("Prices { not a field } and {0} and {} and { a, b }", id="prose-braces"),
    pytest.param("Set {x: 1} or {a b}", id="prose-non-identifiers"),
    pytest.param("{% verbatim %}{{ write {this} }} %}{% endverbatim %}", id="verbatim"),
    pytest.param(
        "{% verbatim block %}{% endverbatim %}{{{{% endverbatim block %}", id="verbatim-named"
    ),
    pytest.param("{% comment %}old: {{ recipient.first_name {x}{% endcomment %}ok", id="comment"),
    pytest.param("{# a note with {{ tags }} and }} inside #}text", id="one-line-comment"),
    pytest.param("Hi {% firstof recipient.first_name 'there' %}!", id="firstof"),
    pytest.param("{% templatetag openvariable %} literal {% templatetag closevariable %}", id="tt"),
    pytest.param("{{ recipient.first_name }}}", id="field-then-literal-brace"),
    pytest.param("Line one\r\n{{ recipient.first_name }}\r\n", id="crlf"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("source", LEGITIMATE)
def test_legitimate_content_passes(source: str) -> None:
    assert template_syntax_problem(source) is None


def test_the_responsive_email_compiles_as_a_campaign() -> None:
    compiled = campaign_compile(
        campaign_id=1,
        name="News",
        subject="News for {{ recipient.first_name }}",
        from_email="team@example.com",
        reply_to="",
        text_body="Hi {{ recipient.first_name }}\n{{ unsubscribe_url }}",
        html_body=RESPONSIVE_HTML,
    )
    assert compiled.html is not None


BROKEN = [
    # (source, line, column, words in the message)
    ("Hi {{ recipient.first_name ", 1, 4, "“{{ recipient.first_name” is not closed — add “}}”"),
    ("Hi {{ recipient.first_name", 1, 4, "is not closed"),
    ("<p>\n<b>Hi {{ recipient.first_name </b></p>", 2, 7, "add “}}”"),
    ("{{ recipient.first_name\n}}", 1, 1, "on the same line"),
    ("Hi {{ recipient.first_name }", 1, 4, "“{{ recipient.first_name }” is not closed"),
    ("{{ a {{ recipient.first_name }}", 1, 1, "“{{ a” is not closed"),
    ("{% if recipient.first_name }yes{% endif %}", 1, 1, "add “%}”"),
    ("{% if recipient.first_name \nyes{% endif %}", 1, 1, "“{% if recipient.first_name” is not"),
    ("text {# a note", 1, 6, "add “#}”"),
    ("Hi {recipient.first_name}", 1, 4, "write “{{ recipient.first_name }}”"),
    ("Hi { recipient.first_name }", 1, 4, "“{ recipient.first_name }” is not a field"),
    ("Hi {first_name}", 1, 4, "write “{{ recipient.first_name }}”"),
    ("Hi { first_name }!", 1, 4, "write “{{ recipient.first_name }}”"),
    ("Go to {unsubscribe_url}", 1, 7, "write “{{ unsubscribe_url }}”"),
    ("{recipient.attributes.city}", 1, 1, "write “{{ recipient.attributes.city }}”"),
    ('{recipient.first_name|default:"you"}', 1, 1, '“{{ recipient.first_name|default:"you" }}”'),
    ("Hi {recipient.first_name}}", 1, 4, "write “{{ recipient.first_name }}”"),
    ("Hi {{{recipient.first_name}}}", 1, 4, "three braces — write “{{ recipient.first_name }}”"),
    ("Hi {{{ recipient.first_name }}", 1, 4, "three braces"),
    ("Hi recipient.first_name }}", 1, 25, "“}}” closes nothing — add the “{{”"),
    ("Total 100%} off", 1, 10, "“%}” closes nothing"),
    ("done #}", 1, 6, "“#}” closes nothing"),
    ("<style>p { color: red }</style>\n<p>{recipient.first_name}</p>", 2, 4, "is not a field"),
    ("<style>.a{x:y}</style><p>a }} b</p>", 1, 28, "closes nothing"),
    ("<style>.a{ {{ recipient.first_name }</style>", 1, 12, "is not closed"),
    ("{% comment %}x{% endcomment %}{{ x", 1, 31, "is not closed"),
    ("Hi\r\n{{ recipient.first_name\r\n", 2, 1, "“{{ recipient.first_name” is not closed"),
]


@pytest.mark.parametrize(("source", "line", "column", "words"), BROKEN)
def test_each_broken_form_is_refused_with_its_position(
    source: str, line: int, column: int, words: str
) -> None:
    with pytest.raises(TemplateProblem) as refused:
        template_compile(source, label="HTML body")

    message = str(refused.value)
    assert message.startswith(f"HTML body: line {line}, column {column}: ")
    assert words in message


@pytest.mark.parametrize(
    ("field", "label"),
    [("subject", "Subject"), ("text_body", "Text body"), ("html_body", "HTML body")],
)
def test_every_templated_field_is_checked_and_named(field: str, label: str) -> None:
    fields = {
        "subject": "News",
        "text_body": "Hello",
        "html_body": "<p>Hello</p>",
        field: "Hi {{ recipient.first_name ",
    }
    with pytest.raises(TemplateProblem, match=f"^{label}: line 1, column 4: "):
        campaign_compile(campaign_id=1, name="N", from_email="a@example.com", reply_to="", **fields)


def test_a_long_excerpt_is_shortened() -> None:
    problem = template_syntax_problem("{{ " + "x" * 200)

    assert problem is not None
    assert "…" in problem.message
    assert len(problem.message) < 120


def test_the_check_stays_linear_on_large_templates() -> None:
    """A maximum-size body of CSS and tags, and hostile runs of marks, are each one pass."""
    size = 512 * 1024
    css = "<style>@media (max-width:600px){.c{width:100%}}</style>"
    sources = [
        (css + "<p>{{ recipient.first_name }} { prose }</p>\n") * (size // 100),
        "{" * size,
        "{ a " * (size // 4),
        "%" * size,
        "<style>" + "}}%}#}{#" * (size // 8),
        "{% comment %}" + "{{ {{" * (size // 6),
    ]
    for source in sources:
        started = time.perf_counter()
        template_syntax_problem(source)
        assert time.perf_counter() - started < 1.0


@pytest.mark.django_db
def test_the_admin_form_shows_the_problem_in_red_on_its_field() -> None:
    client = Client()
    client.force_login(user_with_roles("editor"))
    response = client.post(
        reverse("admin:campaigns_campaign_add"),
        campaign_form_data(None, text_body="Hello\nHi {{ recipient.first_name "),
    )

    html = response.content.decode()
    on_field = re.search(
        r'<div class="[^"]*text-red-600[^"]*">\s*'
        r'<ul class="errorlist" id="id_text_body_error"><li>(?P<message>[^<]*)</li>',
        html,
    )
    assert on_field is not None
    assert on_field["message"] == escape(
        "Text body: line 2, column 4: “{{ recipient.first_name” is not closed — "
        "add “}}” on the same line."
    )
    described = 'aria-describedby="id_text_body_helptext id_text_body_error"'
    assert f'aria-invalid="true" {described}' in html
    assert not Campaign.objects.exists()


def test_content_a_send_froze_before_the_check_still_compiles() -> None:
    """A send launched before this rule keeps delivering what was accepted at its launch."""
    content = {
        "name": "News",
        "subject": "Hi {first_name}",
        "from_email": "team@example.com",
        "reply_to": "",
        "text_body": "Hello {recipient.first_name} }}",
        "html_body": "",
    }
    with pytest.raises(TemplateProblem):
        campaign_compile(campaign_id=1, **content)

    compiled = frozen_content_compile(campaign_id=1, content=content)

    assert compiled.text is not None
