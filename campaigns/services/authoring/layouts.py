"""Layouts: checked before they are saved, versioned on every edit of what they produce,
and audited like campaign edits. A send freezes its compiled content, so an edit here reaches
only sends launched after it."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet

from campaigns.models import AuditEntry, Campaign, Layout
from campaigns.services.audit import By, acting_user, audit_record
from campaigns.services.authoring.compose import content_compose
from campaigns.services.authoring.tags import TAG
from campaigns.services.rendering import (
    campaign_compile,
    message_render,
    sample_recipient_fields,
)
from campaigns.services.template_engine import (
    CAMPAIGN_NAMES,
    LAYOUT_NAMES,
    TemplateProblem,
    template_compile,
)

# What a layout produces: an edit of any of these is a new version.
CONTENT_FIELDS = ("html", "logo_url", "brand_color", "legal_address", "footer_text")
EDITABLE_FIELDS = ("name", *CONTENT_FIELDS, "is_default")
_SLOT = re.compile(r"\{\{\s*content\s*\}\}")
_PERSONAL = re.compile(r"\b(" + "|".join(n for n in CAMPAIGN_NAMES if n != "forloop") + r")\b")
SAMPLE_BODY = """# Hello {{ recipient.first_name }}

This is how a campaign's body sits in the layout: a paragraph with **bold** text and
[a link](https://example.com).

| Plan | Price |
|------|-------|
| Basic | 10 € |
| Plus | 20 € |
"""


def layout_html_problem(html: str) -> str | None:
    """Why ``html`` cannot be a layout, in the field's words, or None.

    The slot ``{{ content }}`` appears exactly once; every tag and field is one the campaign
    engine allows a layout; {% %} tags test only the layout's own names, because they are
    decided once per send, not per recipient.
    """
    slots = len(_SLOT.findall(html))
    if slots == 0:
        return (
            "HTML: the layout has no {{ content }} slot, so the body would go nowhere. "
            "Write {{ content }} once where the body goes."
        )
    if slots > 1:
        return f"HTML: {{{{ content }}}} appears {slots} times; write it exactly once."
    for match in TAG.finditer(html):
        tag = match.group()
        if tag.startswith("{%") and (personal := _PERSONAL.search(tag)):
            return (
                f"HTML: “{tag}” uses {personal.group()}, which differs per recipient; a layout's "
                "{% %} tags may test only layout.*, preheader and content. Show personal "
                "fields with {{ }}."
            )
    try:
        template_compile(html, label="HTML", names=LAYOUT_NAMES)
    except TemplateProblem as exc:
        return str(exc)
    return None


def layout_check(*, layout: Layout) -> None:
    """Raises ValidationError naming the field for anything that would fail a send."""
    # Becoming the default takes it from another layout (layout_save): not a violation.
    layout.full_clean(exclude=["is_default"])
    layout_content_check(layout=layout)


def layout_content_check(*, layout: Layout) -> None:
    """The HTML's rules, then the layout around a sample body as a send would compile it."""
    if problem := layout_html_problem(layout.html):
        raise ValidationError({"html": [problem]})
    try:
        layout_preview(layout=layout)
    except TemplateProblem as exc:
        raise ValidationError({"html": [str(exc)]}) from exc


def layout_preview(*, layout: Layout) -> str:
    """The layout around a sample body, rendered for the sample recipient (links go nowhere)."""
    composed = content_compose(
        body=SAMPLE_BODY,
        body_format=Campaign.BodyFormat.MARKDOWN,
        layout=layout,
        preheader="The preview text shows here in the inbox",
        text_body="",
    )
    compiled = campaign_compile(
        campaign_id=0,
        name="Sample campaign",
        subject="Sample",
        from_email="team@example.com",
        reply_to="",
        text_body=composed.text,
        html_body=composed.html,
    )
    return message_render(
        compiled,
        recipient=sample_recipient_fields(email="sample@example.com"),
        unsubscribe_url="#unsubscribe",
        web_version_url="#web-version",
    ).html


@transaction.atomic
def layout_save(*, layout: Layout, by: By) -> Layout:
    """Checks and saves a layout; +1 version when what it produces changed; audited.

    Making it the default takes that from the one that had it (one default at most).
    """
    layout_check(layout=layout)
    stored = Layout.objects.select_for_update().filter(pk=layout.pk).first() if layout.pk else None
    changed = [name for name in EDITABLE_FIELDS if _differs(stored, layout, name)]
    if stored is not None:
        if not changed:
            return layout
        layout.version = stored.version + (1 if set(changed) & set(CONTENT_FIELDS) else 0)
    if layout.is_default:
        Layout.objects.filter(is_default=True).exclude(pk=layout.pk).update(is_default=False)
    layout.updated_by = acting_user(by)
    layout.save()
    action = AuditEntry.Action.CREATED if stored is None else AuditEntry.Action.EDITED
    audit_record(action=action, actor=by, layout=layout, changes=_diff(layout, changed))
    return layout


def _differs(stored: Layout | None, layout: Layout, name: str) -> bool:
    return stored is None or getattr(stored, name) != getattr(layout, name)


def _diff(layout: Layout, changed: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: str(getattr(layout, name))[:500] for name in changed}
    values["version"] = layout.version
    return values


def layouts_with_usage() -> QuerySet[Layout]:
    """Every layout with how many campaigns use it (``campaign_count``)."""
    return Layout.objects.annotate(campaign_count=Count("campaigns"))


def layout_default() -> Layout | None:
    """The layout a new campaign starts with."""
    return Layout.objects.filter(is_default=True).first()
