"""Layout + body -> the message HTML and text a send freezes: the one owner of that step.

Called once per send at launch, and for test messages and previews; the delivery loop then
renders only the personalisation into the result, exactly as before layouts existed.

A layout is rendered in two stages. Here, its own names are filled: ``{{ content }}`` (the
body), ``{{ preheader }}`` and ``{{ layout.* }}``, and its {% if %}s decided on them. Its
per-recipient tags (``{{ unsubscribe_url }}``, ``{{ recipient.* }}``, ...) are shielded and
come out as written, to be rendered per recipient with the body's own tags.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import css_inline
from django.conf import settings

from campaigns.models import Layout
from campaigns.services.authoring.formats import body_to_html, html_to_text
from campaigns.services.authoring.tags import TagShield
from campaigns.services.template_engine import (
    LAYOUT_NAMES,
    LAYOUT_OWN_NAMES,
    TemplateProblem,
    part_render,
    template_compile,
)

DEFAULT_FOOTER_TEXT = "You are receiving this email because you subscribed to our updates."
# Added to a message whose layout or raw HTML has no unsubscribe link of its own: every
# marketing message carries one in its body, besides the List-Unsubscribe header.
DEFAULT_FOOTER = (
    '<p style="margin: 24px 0 0; font-size: 12px; line-height: 1.5; color: #666666;">'
    f'{DEFAULT_FOOTER_TEXT} <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a> &middot; '
    '<a href="{{ web_version_url }}">View in browser</a></p>'
)
HIDDEN_PREHEADER = (
    '<span style="display: none; max-height: 0; max-width: 0; overflow: hidden; opacity: 0; '
    'mso-hide: all;">{}</span>'
)
_UNSUBSCRIBE_TAG = re.compile(r"\{\{\s*unsubscribe_url\s*\}\}")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class ComposedContent:
    html: str  # template source: personalisation tags as written, CSS inlined
    text: str  # the text body as written, or generated from the HTML
    removed: list[str] = field(default_factory=list)  # what the sanitiser took out


def content_compose(
    *, body: str, body_format: str, layout: Layout | None, preheader: str, text_body: str
) -> ComposedContent:
    """The message HTML and text for a body in its format, set in ``layout`` (None: as is).

    1. Make the body HTML in its format (sanitised rich text and Markdown).
    2. Set it in the layout, or put the hidden preview text before it when there is none.
    3. Append the default footer when nothing carries an unsubscribe link.
    4. Inline the CSS (media queries stay in a <style>), and write the text part from the
       HTML when no text body was written. Tags are shielded through every step.
    """
    if preheader:
        template_compile(preheader, label="Preview text")
    if not body.strip():
        return ComposedContent(html="", text=text_body)
    made = body_to_html(body=body, body_format=body_format)
    shield = TagShield.for_texts(made.html, preheader, layout.html if layout else "")
    content = shield.protect(made.html)
    shown = html.escape(shield.protect(preheader), quote=False)
    if layout is not None:  # the layout hides the preview text itself
        framed, marker = layout_frame(layout, content=content, preheader=preheader, shield=shield)
    else:
        marker = f"{shield.prefix}PREHEADERX" if preheader else ""
        framed = _after_body_open(content, marker)
        shown = HIDDEN_PREHEADER.format(shown)
    message = _footer_ensured(shield.restore(framed.replace(marker, shown) if marker else framed))
    text = text_body
    if not text.strip():
        plain = shield.restore(framed.replace(marker, "") if marker else framed)
        text = html_to_text(_footer_ensured(plain))
    return ComposedContent(
        html=css_inlined(message, forced=layout is not None), text=text, removed=made.removed
    )


def layout_frame(
    layout: Layout, *, content: str, preheader: str, shield: TagShield
) -> tuple[str, str]:
    """The layout with its own names filled and ``content`` in its slot; returns it and the
    marker standing where the preview text goes ("" when there is none)."""
    content_marker = f"{shield.prefix}CONTENTX"
    preheader_marker = f"{shield.prefix}PREHEADERX" if preheader else ""
    source = shield.protect(layout.html, keep=_filled_here)
    template = template_compile(source, label="Layout", names=LAYOUT_NAMES)
    values = {
        "content": content_marker,
        "preheader": preheader_marker,
        "layout": {
            "logo_url": layout.logo_url,
            "brand_color": layout.brand_color,
            "legal_address": layout.legal_address,
            "footer_text": layout.footer_text or DEFAULT_FOOTER_TEXT,
        },
    }
    framed = part_render(
        template,
        values,
        label="Layout",
        max_bytes=settings.OPSDASH_TEMPLATE_MAX_BYTES,
        autoescape=True,
    )
    return framed.replace(content_marker, content, 1), preheader_marker


def _filled_here(tag: str) -> bool:
    """A layout's own names and its {% %} tags are rendered now; per-recipient fields later."""
    return not tag.startswith("{{") or layout_tag_root(tag) in LAYOUT_OWN_NAMES


def layout_tag_root(tag: str) -> str:
    """The top-level name a tag's expression starts with: "layout" in {{ layout.logo_url }}."""
    match = re.match(r"\{[{%#]\s*([A-Za-z_]\w*)", tag)
    return match.group(1) if match else ""


def _after_body_open(content: str, insert: str) -> str:
    if not insert:
        return content
    opened = _BODY_OPEN.search(content)
    if opened is None:
        return insert + content
    return content[: opened.end()] + insert + content[opened.end() :]


def _footer_ensured(message: str) -> str:
    if _UNSUBSCRIBE_TAG.search(message):
        return message
    closing = list(_BODY_CLOSE.finditer(message))
    if not closing:
        return message + DEFAULT_FOOTER
    at = closing[-1].start()
    return message[:at] + DEFAULT_FOOTER + message[at:]


def css_inlined(message: str, *, forced: bool) -> str:
    """Every <style> rule written into the style attributes it matches, @media rules kept in a
    <style>. A fragment without a <style> is left as written unless ``forced`` (a layout)."""
    if not forced and "<style" not in message.lower():
        return message
    shield = TagShield.for_texts(message)
    try:
        inlined = _INLINER.inline(shield.protect(message))
    except css_inline.InlineError as exc:
        raise TemplateProblem(f"Body: the CSS cannot be inlined: {exc}") from exc
    return shield.restore(inlined)
