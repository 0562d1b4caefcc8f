"""A campaign body in its format (rich text, Markdown, HTML) made into email HTML, and
switched between formats without losing the content.

Personalisation tags pass through every step unchanged, also inside ``href`` and ``src``
attributes (``tags.TagShield``).
"""

from __future__ import annotations

import re

import html2text
from django.conf import settings
from markdown_it import MarkdownIt

from campaigns.models import Campaign
from campaigns.services.authoring.sanitise import SanitisedBody, html_sanitise
from campaigns.services.authoring.tags import TagShield
from campaigns.services.template_engine import TemplateProblem

Format = Campaign.BodyFormat


def body_size_check(body: str, *, label: str = "Body") -> None:
    """Refuses a body over OPSDASH_BODY_MAX_BYTES before any tool spends time on it."""
    limit = settings.OPSDASH_BODY_MAX_BYTES
    size = len(body.encode())
    if size > limit:
        raise TemplateProblem(
            f"{label}: it is {size / 1024:,.0f} KB, over the limit of {limit / 1024:,.0f} KB. "
            "Shorten it, or link to a web page for the rest."
        )


def body_to_html(*, body: str, body_format: str) -> SanitisedBody:
    """The body as email HTML, its tags unchanged.

    Markdown (tables on) is rendered then sanitised; rich text is sanitised (``removed`` says
    what went); HTML is an expert's and is returned as written.
    """
    body_size_check(body)
    if body_format == Format.HTML:
        return SanitisedBody(html=body)
    shield = TagShield.for_texts(body)
    protected = shield.protect(body)
    if body_format == Format.MARKDOWN:
        protected = markdown_render(protected)
    elif body_format != Format.RICHTEXT:
        raise TemplateProblem(f"Format: “{body_format}” is not a format a body can have.")
    cleaned = html_sanitise(protected)
    return SanitisedBody(html=shield.restore(cleaned.html), removed=cleaned.removed)


def markdown_render(text: str) -> str:
    # CommonMark with tables; raw HTML allowed (the sanitiser decides what of it stays).
    rendered: str = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    return rendered


def body_convert(*, body: str, from_format: str, to_format: str) -> str:
    """The same content in another format.

    To Markdown: the HTML (Markdown rendered first) written as Markdown. To rich text: the
    HTML, sanitised. To HTML: the HTML (sanitised when it came from Markdown or rich text).
    """
    if from_format == to_format:
        return body
    if from_format == Format.HTML and to_format == Format.RICHTEXT:
        return body_to_html(body=body, body_format=Format.RICHTEXT).html
    html = body_to_html(body=body, body_format=from_format).html
    if to_format == Format.MARKDOWN:
        return html_to_markdown(html)
    if to_format in (Format.HTML, Format.RICHTEXT):
        return html
    raise TemplateProblem(f"Format: “{to_format}” is not a format a body can have.")


def html_to_markdown(html: str) -> str:
    shield = TagShield.for_texts(html)
    converter = _converter()
    converter.ignore_images = False
    converter.ignore_emphasis = False
    return shield.restore(converter.handle(shield.protect(html))).strip() + "\n"


def html_to_text(html: str) -> str:
    """The plain-text part: headings and lists kept, images left out, links as text (url)."""
    shield = TagShield.for_texts(html)
    converter = _converter()
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True  # layout tables are for placement: their cells read as lines
    text = converter.handle(shield.protect(html))
    # Layout cells and line breaks leave blank-looking lines of spaces: one empty line at most.
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    text = re.sub(r"\n{3,}", "\n\n", lines)
    return shield.restore(text, label="Text body").strip() + "\n"


def _converter() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no wrapping: a wrapped line could split a tag
    converter.unicode_snob = True
    converter.single_line_break = False
    converter.pad_tables = False
    return converter
