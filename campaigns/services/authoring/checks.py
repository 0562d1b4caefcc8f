"""Content rules with one owner: what a save warns about and the pre-flight checks report.

The rules read a message's HTML as a recipient gets it (rendered for the sample recipient):
images without alt text, links a mail client cannot follow, a size Gmail clips, and
personalisation fields that would come out empty for much of the audience.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.expressions import RawSQL

from campaigns.models import Campaign, Recipient

# Gmail shows "[Message clipped]" and hides the rest of a message whose HTML passes 102 KB.
GMAIL_CLIP_BYTES = 102 * 1024
LINK_SCHEMES = ("http", "https", "mailto")
SHOWN = 5
# A personal field printed without a fallback: {{ recipient.first_name }}, attributes.<key>.
_FIELD = re.compile(
    r"\{\{\s*recipient\.(?P<path>first_name|last_name|full_name|attributes\.(?P<key>\w+))"
    r"\s*(?P<filters>\|[^}]*)?\}\}"
)


class WarningCode(StrEnum):
    IMAGE_ALT = "image_without_alt"
    LINK_NOT_ABSOLUTE = "links_not_absolute"
    HTML_CLIPPED = "html_clipped"
    EMPTY_FIELD = "personal_field_empty"
    SANITISED = "body_sanitised"


@dataclass(frozen=True)
class ContentWarning:
    code: WarningCode
    message: str


@dataclass(frozen=True)
class LinkReport:
    links: list[str]
    not_absolute: list[str]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images_without_alt: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("a", "area") and values.get("href") is not None:
            self.links.append(values["href"] or "")
        if tag == "img" and not (values.get("alt") or "").strip():
            self.images_without_alt.append(values.get("src") or "")


def _elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def link_absolute(link: str) -> bool:
    parts = urlsplit(link.strip())
    if parts.scheme.lower() == "mailto":
        return bool(parts.path)
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)


def links_report(html: str) -> LinkReport:
    links = _elements(html).links
    return LinkReport(links=links, not_absolute=[link for link in links if not link_absolute(link)])


def links_problem(report: LinkReport) -> str | None:
    bad = report.not_absolute
    if not bad:
        return None
    return (
        f"Links that go nowhere in a mail client ({len(bad)} of {len(report.links)}): "
        f"{_listed(bad)}. Use full https:// addresses, or mailto:."
    )


def html_size(html: str) -> int:
    return len(html.encode("utf-8"))


def size_problem(html: str) -> str | None:
    size = html_size(html)
    if size <= GMAIL_CLIP_BYTES:
        return None
    return (
        f"The HTML body is {size / 1024:.1f} KB: Gmail clips messages over 102 KB and hides the "
        "rest, the unsubscribe link included. Shorten it or move content to a web page."
    )


def images_problem(html: str) -> str | None:
    missing = _elements(html).images_without_alt
    if not missing:
        return None
    count = "An image has" if len(missing) == 1 else f"{len(missing)} images have"
    return (
        f"{count} no alt text ({_listed(missing)}): many inboxes block images, and screen "
        "readers read the alt text. Describe each image in a few words."
    )


def empty_fields_problem(*, campaign: Campaign) -> str | None:
    """Personal fields (without a |default) that would be empty for more than
    OPSDASH_EMPTY_TAG_WARN_PERCENT % of the campaign's audience: one query over it."""
    if campaign.pk is None:
        return None
    sources = (campaign.subject, campaign.preheader, campaign.body, campaign.text_body)
    paths = sorted({m["path"] for m in _FIELD.finditer("\n".join(sources)) if _bare(m)})
    if not paths:
        return None
    counts = _empty_counts(campaign_id=campaign.pk, paths=paths)
    total = counts.pop("total")
    limit = settings.OPSDASH_EMPTY_TAG_WARN_PERCENT
    empty = [(path, n) for path, n in counts.items() if total and n * 100 > total * limit]
    if not empty:
        return None
    said = "; ".join(f"{{{{ recipient.{path} }}}} for {n:,} of {total:,}" for path, n in empty)
    return (
        f"Personal fields that would be empty: {said}. Add a fallback, e.g. "
        '{{ recipient.first_name|default:"there" }}.'
    )


def _bare(match: re.Match[str]) -> bool:
    return "default" not in (match["filters"] or "")


def _empty_counts(*, campaign_id: int, paths: list[str]) -> dict[str, int]:
    from campaigns.selectors.audiences import audience_members_sql  # selectors use services

    # The launch's own membership clause (fixed SQL, values as parameters), as a subquery:
    # the counts are of exactly the recipients a send would go to.
    members, params = audience_members_sql(campaign_id=campaign_id)
    member_ids = RawSQL(f"SELECT r.id {members}", params)  # noqa: S611
    audience = Recipient.objects.filter(pk__in=member_ids)
    aggregates: dict[str, Any] = {"total": Count("pk")}
    for index, path in enumerate(paths):
        aggregates[f"f{index}"] = Count("pk", filter=_empty(path))
    row = audience.aggregate(**aggregates)
    return {"total": row["total"], **{path: row[f"f{i}"] for i, path in enumerate(paths)}}


def _empty(path: str) -> Q:
    if path == "full_name":
        return Q(first_name="", last_name="")
    if not path.startswith("attributes."):
        return Q(**{path: ""})
    key = path.split(".", 1)[1]
    return (
        ~Q(attributes__has_key=key)
        | Q(**{f"attributes__{key}": ""})
        | Q(**{f"attributes__{key}__isnull": True})
    )


def content_warnings(*, campaign: Campaign) -> list[ContentWarning]:
    """What a save warns about (never refuses): the message as the sample recipient gets it."""
    from campaigns.services.preflight.content import sample_render  # preflight uses this module

    html = sample_render(campaign).html
    found = [
        (WarningCode.IMAGE_ALT, images_problem(html)),
        (WarningCode.LINK_NOT_ABSOLUTE, links_problem(links_report(html))),
        (WarningCode.HTML_CLIPPED, size_problem(html)),
        (WarningCode.EMPTY_FIELD, empty_fields_problem(campaign=campaign)),
    ]
    warnings = [ContentWarning(code, message) for code, message in found if message]
    return warnings + _sanitised(campaign)


def _sanitised(campaign: Campaign) -> list[ContentWarning]:
    from campaigns.services.authoring.formats import body_to_html

    removed = body_to_html(body=campaign.body, body_format=campaign.body_format).removed
    if not removed:
        return []
    said = "; ".join(removed)
    return [ContentWarning(WarningCode.SANITISED, f"The pasted text was cleaned up: {said}.")]


def _listed(items: Iterable[str]) -> str:
    values = list(items)
    shown = ", ".join(f"“{value}”" for value in values[:SHOWN])
    more = f" and {len(values) - SHOWN} more" if len(values) > SHOWN else ""
    return shown + more
