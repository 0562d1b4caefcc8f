"""Composing a campaign without writing HTML, in a real browser, against the real stack.

An editor writes one campaign in the rich text editor and one in Markdown, both inside the
default layout, switches formats without losing what was written, previews the message at a
phone and a desktop width (light and dark), and sends a test to a seed list personalised as a
real recipient. A real Celery worker delivers the tests to a local SMTP sink, where the message
is checked as a recipient's mail app gets it: styles inlined on the layout's elements, the
layout's footer (legal address, unsubscribe link) and a plain-text part beside the HTML.

Screenshots go to OPSDASH_SCREENSHOT_DIR when it is set (``docs/screenshots`` for the staff
guide), else to pytest's temporary directory.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from django.apps import apps as django_apps

from campaigns.models import Campaign, Layout, SeedList
from campaigns.services.audiences import message_links
from opsdash.smtp_sink import SmtpSink
from tests.admin.helpers import user_with_roles
from tests.browser.support import login, tab, wait_for
from tests.factories import RecipientFactory
from tests.processes import CeleryProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

SEEDS = "Team inboxes"
EDITOR = "document.querySelector('[data-body-editor]')"
MARKDOWN = (
    "\n\n## What is new\n\n"
    "- Longer opening hours in **{{ recipient.attributes.city }}**\n"
    "- [Read the full story](https://example.com/autumn)\n"
)


def test_an_editor_composes_previews_and_tests_campaigns_in_the_default_layout(
    live_server: Any,
    smtp_sink: SmtpSink,
    worker: CeleryProcess,
    page: Any,
    new_page: Callable[..., Any],
    shots: Callable[..., None],
) -> None:
    layout = default_layout()
    user_with_roles("editor", username="eddie", email="eddie@example.com", first_name="Eddie")
    RecipientFactory.create(
        email="ada@example.com", first_name="Ada", attributes={"city": "Bergen"}
    )
    SeedList.objects.create(name=SEEDS, addresses="qa-inbox@seed.test\n")
    base = live_server.url
    login(page, base, "eddie")

    # 1. Rich text: typed into the editor, in the default layout the form preselects.
    open_new_campaign(
        page, base, "Spring news", subject="Spring news for {{ recipient.first_name }}"
    )
    assert page.locator("select[name=body_format]").input_value() == "richtext"
    assert page.locator("select[name=layout]").input_value() == str(layout.pk)
    assert page.locator("textarea[name=body]").is_disabled()  # only the editor posts a body
    editor = page.locator("trix-editor")
    editor.click()
    page.locator("button[data-trix-attribute=heading1]").click()
    type_into_editor(page, "Spring is here")
    page.keyboard.press("Enter")
    type_into_editor(page, "Hello {{ recipient.first_name }}, our garden opens on Saturday.")
    # Select "our garden opens" and make it bold, as a person does with the toolbar.
    for _ in " on Saturday.":
        page.keyboard.press("ArrowLeft")
    for _ in "our garden opens":
        page.keyboard.press("Shift+ArrowLeft")
    page.locator("button[data-trix-attribute=bold]").click()
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.locator("button[data-trix-attribute=bullet]").click()
    type_into_editor(page, "Guided tours at 11:00")
    page.keyboard.press("Enter")
    type_into_editor(page, "Coffee in the greenhouse")
    wait_for_preview(page, "Spring news for Sample")
    assert "Hello Sample, our garden opens" in frame_text(page, "#preview-frame")
    shots(page, "authoring-editor-richtext", element=page.locator("#campaign_form"))
    spring = save(page, "Spring news")
    assert spring.body_format == Campaign.BodyFormat.RICHTEXT
    assert re.search(r"<(strong|b)>our garden opens</(strong|b)>", spring.body), spring.body
    assert spring.layout_id == layout.pk

    # 2. Markdown: begun in rich text, switched (the writing is kept), then written on.
    open_new_campaign(
        page,
        base,
        "Autumn news",
        subject="Autumn news for {{ recipient.first_name }}",
        preheader="Longer opening hours, {{ recipient.first_name }}",
    )
    page.locator("trix-editor").click()
    type_into_editor(page, "Hello {{ recipient.first_name }}, autumn is here.")
    page.select_option("select[name=body_format]", "markdown")
    source = page.locator("textarea[name=body]")
    page.wait_for_function(
        "document.querySelector('[data-body-editor]').dataset.format === 'markdown'"
    )
    assert source.is_enabled() and page.locator("input#wysiwyg-body").is_disabled()
    assert "Hello {{ recipient.first_name }}, autumn is here." in source.input_value()
    assert (
        "converted from Rich text to Markdown"
        in page.locator("[data-body-editor-note]").inner_text()
    )
    source.press("End")
    source.type(MARKDOWN)

    # 3. The preview, as Ada: desktop and phone side by side, the headers, the text part.
    page.fill("#preview-recipient", "ada@example.com")
    page.click("#preview-refresh")
    wait_for_preview(page, "Autumn news for Ada")
    widths = page.evaluate(
        "['preview-frame', 'preview-frame-mobile']"
        ".map(id => document.getElementById(id).clientWidth)"
    )
    assert widths[0] >= 600 and 360 <= widths[1] <= 380, widths
    for frame in ("#preview-frame", "#preview-frame-mobile"):
        text = frame_text(page, frame)
        assert "Hello Ada, autumn is here." in text and "Longer opening hours in Bergen" in text
        assert layout.legal_address.splitlines()[0] in text
    assert page.locator("#preview-preheader").inner_text() == "Longer opening hours, Ada"
    test_links = message_links(recipient_id=0, send_id=0)
    assert page.locator("#preview-unsubscribe").inner_text() == f"<{test_links.unsubscribe_url}>"
    assert "Hello Ada" in page.locator("#preview-text").text_content()
    shots(page, "authoring-editor-markdown", element=page.locator("#campaign_form"))
    page.locator("#preview-text-part summary").click()
    # Tall enough for the whole panel: the form's sticky Save bar stays out of the picture.
    page.set_viewport_size({"width": 1400, "height": 2400})
    shots(page, "authoring-preview", element=page.locator("#campaign-preview"))
    page.check("#preview-dark")
    page.wait_for_function("document.getElementById('campaign-preview').dataset.dark === 'yes'")
    shots(page, "authoring-preview-dark", element=page.locator("#campaign-preview"))
    page.set_viewport_size({"width": 1400, "height": 900})
    autumn = save(page, "Autumn news")
    assert autumn.body_format == Campaign.BodyFormat.MARKDOWN
    assert "## What is new" in autumn.body

    # 4. A test to the seed list as Ada goes out as the send will: compiled, in the layout.
    send_test_as_ada(page)
    message = wait_for(
        lambda: next(
            (m for m in smtp_sink.messages if m["Subject"] == "[TEST] Autumn news for Ada"), None
        ),
        timeout=90,
        what="the Markdown campaign's test at the sink",
    )
    assert message["To"].addresses[0].addr_spec == "qa-inbox@seed.test"
    html, text = parts(message)
    assert_styles_inlined(html)
    assert "Hello Ada, autumn is here." in html and "Longer opening hours in" in html
    assert layout.legal_address.splitlines()[0] in html
    assert f'href="{test_links.unsubscribe_url}"' in html, "the footer's unsubscribe link"
    assert f'href="{test_links.web_version_url}"' in html, "the footer's web version link"
    assert "Hello Ada, autumn is here." in text and "Bergen" in text
    assert "<" not in text.replace("<http", "")  # a plain-text part, not HTML

    # 5. The rich text campaign's test too: the editor's HTML, sanitised, in the same layout.
    page.goto(f"{base}/admin/campaigns/campaign/{spring.pk}/change/")
    send_test_as_ada(page)
    message = wait_for(
        lambda: next(
            (m for m in smtp_sink.messages if m["Subject"] == "[TEST] Spring news for Ada"), None
        ),
        timeout=90,
        what="the rich text campaign's test at the sink",
    )
    html, text = parts(message)
    assert "Hello Ada" in html and re.search(r"<(strong|b)[^>]*>our garden opens", html)
    assert_styles_inlined(html)
    assert layout.legal_address.splitlines()[0] in html
    assert "our garden opens" in text

    # 6. The layouts, where an approver keeps the logo, colours and footer.
    user_with_roles("approver", username="april", email="april@example.com")
    # Tall enough for the whole form: the sticky Save bar stays at the bottom of the picture.
    approver = new_page(viewport={"width": 1400, "height": 2800})
    login(approver, base, "april")
    approver.goto(f"{base}/admin/campaigns/layout/{layout.pk}/change/")
    sample = approver.frame_locator("iframe[title='Layout preview']").locator("body")
    assert layout.legal_address.splitlines()[0] in sample.inner_text()
    shots(approver, "layout-admin")


def default_layout() -> Layout:
    """The shipped default layout (a transactional test's flush removed the migration's)."""
    shipped = importlib.import_module("campaigns.migrations.0026_shipped_layouts")
    shipped.create(django_apps, None)
    return Layout.objects.get(is_default=True)


def assert_styles_inlined(html: str) -> None:
    """The layout's stylesheet is on its elements, where mail apps that drop <style> read it."""
    cells = re.findall(r"<td\b[^>]*>", html)
    content = [cell for cell in cells if re.search(r'class="[^"]*\bcontent\b', cell)]
    assert content and re.search(r'style="[^"]*font-family', content[0]), content
    tables = re.findall(r"<table\b[^>]*>", html)
    assert any('style="' in table for table in tables), tables


def type_into_editor(page: Any, text: str) -> None:
    """Types as a person does: Trix applies each key on the next frame, and keys sent faster
    than that land out of order."""
    page.keyboard.type(text, delay=25)


def open_new_campaign(
    page: Any, base: str, name: str, *, subject: str, preheader: str = ""
) -> None:
    """A new campaign's Message tab filled in, and its Content tab open."""
    page.goto(f"{base}/admin/campaigns/campaign/add/")
    page.fill("input[name=name]", name)
    page.fill("input[name=from_email]", "News <news@example.com>")
    page.fill("input[name=subject]", subject)
    page.fill("input[name=preheader]", preheader)
    tab(page, "Content")


def wait_for_preview(page: Any, subject: str) -> None:
    page.wait_for_function(
        "s => document.getElementById('preview-subject').textContent === s", arg=subject
    )


def frame_text(page: Any, selector: str) -> str:
    return str(page.frame_locator(selector).locator("body").inner_text())


def save(page: Any, name: str) -> Campaign:
    page.locator("input[name=_continue], button[name=_continue]").first.click()
    page.wait_for_url(re.compile(r"/campaign/\d+/change/"))
    return Campaign.objects.get(name=name)


def send_test_as_ada(page: Any) -> None:
    form = page.locator("#test-send-form")
    form.locator("input[name=to][value=seeds]").check()
    form.locator("select[name=seed_list]").select_option(label=f"{SEEDS} (1)")
    form.locator("input[name=as][value=recipient]").check()
    form.locator("input[name=recipient]").fill("ada@example.com")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"test_task="))


def parts(message: EmailMessage) -> tuple[str, str]:
    """The HTML and the plain-text part; a message without either fails here."""
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None, message.get_content_type()
    return str(html.get_content()), str(text.get_content())
