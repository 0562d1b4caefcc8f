"""Campaign templates: compile once, validate fields, render per recipient, build the MIME.

Templates use Django template syntax in the locked-down engine of ``template_engine`` (its
allow-list of tags and filters, and the cost bounds of a render). The context offers only
``recipient`` (email, first_name, last_name, full_name, attributes.<key>), ``campaign`` (name),
``unsubscribe_url`` and ``web_version_url``; anything else is refused at compose time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.template import Template
from django.utils import timezone

from campaigns.services.template_engine import TemplateProblem as TemplateProblem
from campaigns.services.template_engine import part_render, template_compile

if TYPE_CHECKING:
    from campaigns.models import Campaign, Recipient

_NEWLINES = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]|%0[ad]", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def header_value_check(value: str, *, label: str) -> None:
    """Refuses header values that could smuggle extra headers (CR/LF, also percent-encoded)."""
    if _NEWLINES.search(value):
        raise TemplateProblem(f"{label}: line breaks are not allowed in a header.")


def address_check(value: str, *, label: str, allow_display_name: bool = True) -> str:
    """Validates an address (optionally 'Name <addr>'), returning it in canonical form."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    header_value_check(value, label=label)
    name, addr = parseaddr(value)
    if not addr or (name and not allow_display_name):
        raise TemplateProblem(f"{label}: '{value}' is not a valid email address.")
    try:
        validate_email(addr)
    except ValidationError as exc:
        raise TemplateProblem(f"{label}: '{value}' is not a valid email address.") from exc
    return formataddr((name, addr)) if name else addr


@dataclass(frozen=True)
class CompiledCampaign:
    """A campaign's templates compiled once, for rendering many recipients."""

    campaign_id: int
    campaign_name: str
    from_email: str
    reply_to: str
    subject: Template
    text: Template | None
    html: Template | None


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def campaign_compile(
    *,
    campaign_id: int,
    name: str,
    subject: str,
    from_email: str,
    reply_to: str,
    text_body: str,
    html_body: str,
) -> CompiledCampaign:
    """Compiles a campaign's templates and renders them once for the sample recipient.

    The sample render refuses, naming the field, a template that is already over a limit of
    ``part_render`` without any recipient's data (a loop over a long literal, say).
    """
    content = {"name": name, "subject": subject, "from_email": from_email, "reply_to": reply_to}
    content.update(text_body=text_body, html_body=html_body)
    return _compile(campaign_id, content, check_marks=True)


def frozen_content_compile(*, campaign_id: int, content: Mapping[str, str]) -> CompiledCampaign:
    """``campaign_compile`` for the content a send froze at launch, without the tag-mark check
    (``template_compile``): it was accepted then, and a rule added since must not stop a send
    half-way."""
    return _compile(campaign_id, content, check_marks=False)


def _compile(
    campaign_id: int, content: Mapping[str, str], *, check_marks: bool
) -> CompiledCampaign:
    text_body, html_body = content["text_body"], content["html_body"]
    if not text_body.strip() and not html_body.strip():
        raise TemplateProblem("Body: write a text body, an HTML body, or both.")
    compile_part = partial(template_compile, check_marks=check_marks)
    subject = compile_part(content["subject"], label="Subject")
    # The HTML first: a text part written from it has its problems, which are the body's.
    html = compile_part(html_body, label="HTML body") if html_body.strip() else None
    compiled = CompiledCampaign(
        campaign_id=campaign_id,
        campaign_name=content["name"],
        from_email=content["from_email"],
        reply_to=content["reply_to"],
        subject=subject,
        text=compile_part(text_body, label="Text body") if text_body.strip() else None,
        html=html,
    )
    _sample_render(compiled)
    return compiled


def _sample_render(compiled: CompiledCampaign) -> None:
    values = template_values(
        compiled,
        recipient=sample_recipient_fields(email="sample@example.com"),
        unsubscribe_url=public_url("/unsubscribe/sample/"),
        web_version_url=public_url("/m/sample/"),
    )
    for part in _parts(compiled):
        try:
            part.render(values)
        except TemplateProblem:
            raise
        except Exception as exc:  # anything a template can raise, said in the field's name
            raise TemplateProblem(f"{part.label}: the template fails to render: {exc}") from exc


def campaign_compile_for(campaign: Campaign) -> CompiledCampaign:
    """A campaign's own content composed (layout, format) and compiled, as a launch would
    freeze it (an unsaved campaign compiles with id 0)."""
    from campaigns.services.authoring import campaign_compose  # authoring uses this module

    composed = campaign_compose(campaign=campaign)
    return campaign_compile(
        campaign_id=campaign.pk or 0,
        name=campaign.name,
        subject=campaign.subject,
        from_email=campaign.from_email,
        reply_to=campaign.reply_to,
        text_body=composed.text,
        html_body=composed.html,
    )


def recipient_fields(recipient: Recipient) -> dict[str, Any]:
    """The fields of a recipient that templates see, as ``message_render`` takes them."""
    return {
        "email": recipient.email,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "attributes": recipient.attributes,
    }


def sample_recipient_fields(*, email: str) -> dict[str, Any]:
    """A stand-in recipient for a test message or a preview when no real one is chosen."""
    return {"email": email, "first_name": "Sample", "last_name": "Recipient", "attributes": {}}


def recipient_context(row: Mapping[str, Any]) -> dict[str, Any]:
    first, last = row.get("first_name") or "", row.get("last_name") or ""
    return {
        "email": row["email"],
        "first_name": first,
        "last_name": last,
        "full_name": f"{first} {last}".strip(),
        "attributes": row.get("attributes") or {},
    }


@dataclass(frozen=True)
class _Part:
    """One template of a message with its label, its size limit and its escaping."""

    label: str
    template: Template | None
    max_bytes: int
    autoescape: bool

    def render(self, values: Mapping[str, Any]) -> str:
        if self.template is None:
            return ""
        return part_render(
            self.template,
            values,
            label=self.label,
            max_bytes=self.max_bytes,
            autoescape=self.autoescape,
        )


def _parts(compiled: CompiledCampaign) -> tuple[_Part, _Part, _Part]:
    """Subject, text and HTML; only the HTML escapes what it inserts."""
    body_max = settings.OPSDASH_TEMPLATE_MAX_BYTES
    return (
        _Part("Subject", compiled.subject, settings.OPSDASH_TEMPLATE_SUBJECT_MAX_BYTES, False),
        _Part("Text body", compiled.text, body_max, False),
        _Part("HTML body", compiled.html, body_max, True),
    )


def template_values(
    compiled: CompiledCampaign,
    *,
    recipient: Mapping[str, Any],
    unsubscribe_url: str,
    web_version_url: str,
) -> dict[str, Any]:
    return {
        "recipient": recipient_context(recipient),
        "campaign": {"name": compiled.campaign_name},
        "unsubscribe_url": unsubscribe_url,
        "web_version_url": web_version_url,
    }


def message_render(
    compiled: CompiledCampaign,
    *,
    recipient: Mapping[str, Any],
    unsubscribe_url: str,
    web_version_url: str = "",
) -> RenderedMessage:
    """Renders each part; one over its limit raises TemplateProblem naming it."""
    values = template_values(
        compiled,
        recipient=recipient,
        unsubscribe_url=unsubscribe_url,
        web_version_url=web_version_url,
    )
    subject, text, html = (part.render(values) for part in _parts(compiled))
    # The subject comes from recipient data too: fold any line break into a space.
    return RenderedMessage(subject=_WHITESPACE.sub(" ", subject).strip(), text=text, html=html)


def message_build(
    compiled: CompiledCampaign,
    rendered: RenderedMessage,
    *,
    to_email: str,
    to_name: str,
    message_id: str,
    unsubscribe_url: str,
) -> EmailMessage:
    """The MIME message, with RFC 8058 one-click unsubscribe headers."""
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = compiled.from_email
    msg["To"] = Address(display_name=_WHITESPACE.sub(" ", to_name).strip(), addr_spec=to_email)
    if compiled.reply_to:
        msg["Reply-To"] = compiled.reply_to
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = message_id
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Opsdash-Campaign"] = str(compiled.campaign_id)
    msg.set_content(rendered.text or _html_to_text_fallback(rendered.html))
    if rendered.html:
        msg.add_alternative(rendered.html, subtype="html")
    return msg


def _html_to_text_fallback(html: str) -> str:
    from django.utils.html import strip_tags

    return strip_tags(html)


def public_url(path: str) -> str:
    return f"{settings.OPSDASH_PUBLIC_URL}{path}"
