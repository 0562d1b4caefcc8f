"""Campaign templates: compile once, validate fields, render per recipient, build the MIME.

Templates use Django template syntax in a locked-down engine: no loaders (so no include or
extends of server files), no ``{% load %}`` of tag libraries, no ``{% debug %}``. The context
offers only ``recipient`` (email, first_name, last_name, full_name, attributes.<key>),
``campaign`` (name) and ``unsubscribe_url``; anything else is refused at compose time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import Node, NodeList, VariableNode
from django.template.defaulttags import DebugNode, ForNode, WithNode
from django.utils import timezone

if TYPE_CHECKING:
    from campaigns.models import Campaign, Recipient

RECIPIENT_FIELDS = frozenset({"email", "first_name", "last_name", "full_name", "attributes"})
CAMPAIGN_FIELDS = frozenset({"name"})
TOP_LEVEL_NAMES = frozenset({"recipient", "campaign", "unsubscribe_url", "forloop"})
_NEWLINES = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]|%0[ad]", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


class TemplateProblem(ValueError):
    """A template that cannot be used; the message names the problem for the staff member."""


class _CampaignEngine(Engine):
    # loader_tags (include, extends, block) are left out on purpose.
    default_builtins = ["django.template.defaulttags", "django.template.defaultfilters"]


_ENGINE = _CampaignEngine(libraries={}, loaders=[], debug=False)


def template_compile(source: str, *, label: str) -> Template:
    """Compiles and checks one template; raises TemplateProblem naming ``label``."""
    try:
        template = _ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{label}: the template does not compile: {exc}") from exc
    _check_nodes(template.nodelist, label=label, local_names=frozenset())
    return template


def _iter_child_nodelists(node: Node) -> Iterator[NodeList]:
    for attr in node.child_nodelists:
        nodelist = getattr(node, attr, None)
        if nodelist:
            yield nodelist
    for _condition, nodelist in getattr(node, "conditions_nodelists", ()):
        yield nodelist


def _check_nodes(nodelist: NodeList, *, label: str, local_names: frozenset[str]) -> None:
    for node in nodelist:
        if isinstance(node, DebugNode):
            raise TemplateProblem(f"{label}: the {{% debug %}} tag is not allowed.")
        if isinstance(node, VariableNode):
            _check_variable(node, label=label, local_names=local_names)
        names = local_names
        if isinstance(node, ForNode):
            names = names | frozenset(node.loopvars)
        elif isinstance(node, WithNode):
            names = names | frozenset(node.extra_context)
        for child in _iter_child_nodelists(node):
            _check_nodes(child, label=label, local_names=names)


def _check_variable(node: VariableNode, *, label: str, local_names: frozenset[str]) -> None:
    var = node.filter_expression.var
    lookups = getattr(var, "lookups", None)
    if not lookups:  # a literal such as {{ "text" }}
        return
    root = lookups[0]
    if root in local_names:
        return
    if root not in TOP_LEVEL_NAMES:
        raise TemplateProblem(
            f"{label}: unknown field {{{{ {var} }}}}. Use recipient.email, recipient.first_name, "
            "recipient.last_name, recipient.full_name, recipient.attributes.<name>, "
            "campaign.name or unsubscribe_url."
        )
    if root == "recipient" and len(lookups) > 1 and lookups[1] not in RECIPIENT_FIELDS:
        raise TemplateProblem(
            f"{label}: the recipient has no field '{lookups[1]}' ({{{{ {var} }}}})."
        )
    if root == "campaign" and len(lookups) > 1 and lookups[1] not in CAMPAIGN_FIELDS:
        raise TemplateProblem(
            f"{label}: the campaign has no field '{lookups[1]}' ({{{{ {var} }}}})."
        )


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
    if not text_body.strip() and not html_body.strip():
        raise TemplateProblem("Body: write a text body, an HTML body, or both.")
    return CompiledCampaign(
        campaign_id=campaign_id,
        campaign_name=name,
        from_email=from_email,
        reply_to=reply_to,
        subject=template_compile(subject, label="Subject"),
        text=template_compile(text_body, label="Text body") if text_body.strip() else None,
        html=template_compile(html_body, label="HTML body") if html_body.strip() else None,
    )


def campaign_compile_for(campaign: Campaign) -> CompiledCampaign:
    """A campaign's own content, compiled (an unsaved campaign compiles with id 0)."""
    return campaign_compile(
        campaign_id=campaign.pk or 0,
        name=campaign.name,
        subject=campaign.subject,
        from_email=campaign.from_email,
        reply_to=campaign.reply_to,
        text_body=campaign.text_body,
        html_body=campaign.html_body,
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


def message_render(
    compiled: CompiledCampaign, *, recipient: Mapping[str, Any], unsubscribe_url: str
) -> RenderedMessage:
    values = {
        "recipient": recipient_context(recipient),
        "campaign": {"name": compiled.campaign_name},
        "unsubscribe_url": unsubscribe_url,
    }
    # The subject comes from recipient data too: fold any line break into a space.
    subject = _WHITESPACE.sub(" ", compiled.subject.render(Context(values, autoescape=False)))
    text = compiled.text.render(Context(values, autoescape=False)) if compiled.text else ""
    html = compiled.html.render(Context(values)) if compiled.html else ""
    return RenderedMessage(subject=subject.strip(), text=text, html=html)


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
