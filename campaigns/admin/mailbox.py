"""The demo's mailbox: what the local SMTP catcher received, readable in the admin.

It holds every message of every campaign and test, so every recipient's address and
personalised content: superusers only, whatever role a staff member has. A campaign's message
can be made to bounce (hard, soft, or a complaint), to watch what opsdash does with it.
"""

from __future__ import annotations

import mailbox
import os
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.utils.http import urlencode

from campaigns.services.bounces import (
    PlayKind,
    bounce_play,
    delivery_by_message_id,
    returned_from_raw,
)

PAGE_SIZE = 50


def _superuser_only(request: HttpRequest) -> None:
    if not request.user.is_superuser:
        raise PermissionDenied


def _maildir() -> mailbox.Maildir:
    if not settings.OPSDASH_MAILBOX_DIR:
        raise Http404("No mail catcher is configured (OPSDASH_MAILBOX_DIR).")
    return mailbox.Maildir(Path(settings.OPSDASH_MAILBOX_DIR), factory=None, create=True)


def _summary(key: str, message: EmailMessage) -> dict[str, Any]:
    return {
        "key": key,
        "subject": message["Subject"],
        "to": message["To"],
        "from": message["From"],
        "date": message["Date"],
    }


def _newest_first(box: mailbox.Maildir) -> list[str]:
    """The keys by the time their file was written, newest first. A key's leading seconds
    sort as text ("…9.…" above "…10.…" across a power of ten) and say nothing within one
    second, so the files' modification times decide, the name only breaks a tie."""
    stamped: list[tuple[int, str]] = []
    for sub in ("new", "cur"):
        with os.scandir(Path(str(settings.OPSDASH_MAILBOX_DIR)) / sub) as entries:
            for entry in entries:
                if entry.is_file() and not entry.name.startswith("."):
                    key = entry.name.split(box.colon, 1)[0]
                    stamped.append((entry.stat().st_mtime_ns, key))
    return [key for _, key in sorted(stamped, reverse=True)]


def _headers(box: mailbox.Maildir, key: str, parser: BytesParser[EmailMessage]) -> EmailMessage:
    # Headers only, so the file and not the whole message; typeshed's parse() wants a buffer
    # that mailbox's file proxy does not claim to be, though it reads like one.
    with box.get_file(key) as handle:
        return parser.parse(handle, headersonly=True)  # type: ignore[arg-type]


def _addressed_to(message: EmailMessage, wanted: str) -> bool:
    """Whether ``wanted`` is one of the To addresses, whatever the case either is typed in."""
    addresses = getaddresses([str(value) for value in message.get_all("To", [])])
    return any(address.lower() == wanted for _, address in addresses)


def mailbox_view(request: HttpRequest) -> HttpResponse:
    """The caught messages newest first, a page at a time, or those to one address (?to=).

    Finding an address reads the headers of every message: the demo's catcher holds a few
    hundred, and this page exists only there.
    """
    _superuser_only(request)
    box = _maildir()
    parser: BytesParser[EmailMessage] = BytesParser(policy=policy.default)
    keys = _newest_first(box)
    total = len(keys)
    to = request.GET.get("to", "").strip().lower()
    if to:
        keys = [key for key in keys if _addressed_to(_headers(box, key, parser), to)]
    page = Paginator(keys, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [_summary(key, _headers(box, key, parser)) for key in page.object_list]
    context = {
        **admin.site.each_context(request),
        "title": "Mailbox",
        "rows": rows,
        "total": total,
        "found": len(keys),
        "to": to,
        "page": page,
        "previous_url": _page_url(to, page.previous_page_number()) if page.has_previous() else "",
        "next_url": _page_url(to, page.next_page_number()) if page.has_next() else "",
    }
    return TemplateResponse(request, "admin/campaigns/mailbox.html", context)


def _page_url(to: str, number: int) -> str:
    query: dict[str, str | int] = {"to": to} if to else {}
    return "?" + urlencode({**query, "page": number})


def mailbox_message_view(request: HttpRequest, key: str) -> HttpResponse:
    """One caught message; for a campaign's message, a form that plays a bounce for it (POST)."""
    _superuser_only(request)
    box = _maildir()
    try:
        raw = box.get_bytes(key)
    except KeyError as exc:
        raise Http404("No such message.") from exc
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    delivery_id = delivery_by_message_id(str(message.get("Message-ID", "")))
    if request.method == "POST":
        return _play_bounce(request, raw, delivery_id)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    context = {
        **admin.site.each_context(request),
        "title": message["Subject"],
        "message": _summary(key, message),
        "headers": list(message.items()),
        "html": html_part.get_content() if html_part is not None else "",
        "text": text_part.get_content() if text_part is not None else "",
        "delivery_id": delivery_id,
        "bounce_kinds": [(kind.value, label) for kind, label in BOUNCE_KINDS.items()],
    }
    return TemplateResponse(request, "admin/campaigns/mailbox_message.html", context)


BOUNCE_KINDS = {
    PlayKind.HARD: "Hard bounce (5.1.1 no such user)",
    PlayKind.SOFT: "Soft bounce (4.2.2 mailbox full)",
    PlayKind.COMPLAINT: "Spam complaint (feedback report)",
}


def _play_bounce(request: HttpRequest, raw: bytes, delivery_id: int | None) -> HttpResponse:
    if delivery_id is None:
        raise Http404("This message was not sent by a campaign of this opsdash.")
    try:
        kind = PlayKind(request.POST.get("kind", ""))
    except ValueError:
        return HttpResponseBadRequest("Choose a hard bounce, a soft bounce or a complaint.")
    played = bounce_play(kind=kind, returned=returned_from_raw(raw=raw))
    label = BOUNCE_KINDS[kind].split(" (")[0].lower()
    note = f"Played a {label} for delivery {delivery_id}. {played.detail}"
    (messages.success if played.over_smtp else messages.warning)(request, note)
    return HttpResponseRedirect(request.get_full_path())
