"""Public endpoints: unsubscribe (GET shows, POST acts, RFC 8058 one-click included), a
message's web version, and the public archive."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from campaigns.selectors.unsubscribe import unsubscribe_facts
from campaigns.services.audiences import (
    ONE_CLICK_REASON,
    UNSUBSCRIBE_REASONS,
    InvalidToken,
    UnsubscribeLink,
    UnsubscribeScope,
    recipient_unsubscribe,
    recipient_unsubscribe_from_send_lists,
    unsubscribe_link_read,
)
from campaigns.services.rendering import RenderedMessage
from campaigns.services.webversion import (
    WebVersionMissing,
    archive_entries,
    archive_render,
    archive_send,
    web_version_render,
)

# A message's HTML is the campaign's (raw HTML is allowed to experts): shown in a sandbox
# with no script and an origin of its own, so it can never act on this site.
_MESSAGE_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:"
)


# Mail providers POST the one-click request without cookies or a CSRF token; the HMAC-signed
# token in the URL is the proof instead, for the page's own buttons as well (a forged form
# would need the token, which only the recipient's message holds).
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = unsubscribe_link_read(token)
    except InvalidToken as exc:
        return _page(
            request, "unsubscribe_invalid", {"message": str(exc), "damaged": True}, status=400
        )
    if request.method == "POST":
        scope = _act(link, request.POST.get("scope", ""))
        if (facts := unsubscribe_facts(link)) is None:  # 200 still: a one-click POST was served
            return _page(request, "unsubscribe_invalid", {"message": _nobody(link)})
        return _page(request, "unsubscribe_done", {"facts": facts, "scope": scope})
    # Link scanners fetch URLs: a GET only shows the choices.
    facts = unsubscribe_facts(link)
    if facts is None:
        return _page(request, "unsubscribe_invalid", {"message": _nobody(link)}, status=404)
    return _page(request, "unsubscribe_confirm", {"facts": facts})


def _act(link: UnsubscribeLink, scope: str) -> UnsubscribeScope:
    """Applies the person's choice. A POST without one is the one-click request (RFC 8058),
    which has always meant everything."""
    if scope == UnsubscribeScope.LISTS:
        recipient_unsubscribe_from_send_lists(recipient_id=link.recipient_id, send_id=link.send_id)
        return UnsubscribeScope.LISTS
    reason = UNSUBSCRIBE_REASONS[UnsubscribeScope.EVERYTHING] if scope else ONE_CLICK_REASON
    recipient_unsubscribe(recipient_id=link.recipient_id, send_id=link.send_id, reason=reason)
    return UnsubscribeScope.EVERYTHING


def _nobody(link: UnsubscribeLink) -> str:
    if link.send_id == 0:
        return "This link came with a test message, so it unsubscribes nobody."
    return "This address is no longer on any of our lists, so there is nothing to unsubscribe."


def _page(
    request: HttpRequest, name: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    context = {"sender_name": settings.OPSDASH_SENDER_NAME, **context}
    return render(request, f"campaigns/{name}.html", context, status=status)


@never_cache
@require_GET
def web_version(request: HttpRequest, token: str) -> HttpResponse:
    """The message as its recipient got it, from the send's frozen content."""
    try:
        rendered = web_version_render(token=token)
    except InvalidToken as exc:
        return _page(
            request, "message_unavailable", {"message": str(exc), "damaged": True}, status=400
        )
    except WebVersionMissing as exc:
        return _page(request, "message_unavailable", {"message": str(exc)}, status=404)
    return _message_page(rendered)


@require_GET
def archive(request: HttpRequest) -> HttpResponse:
    return _page(request, "archive", {"entries": archive_entries()})


@require_GET
def archive_message(request: HttpRequest, campaign_id: int) -> HttpResponse:
    try:
        send = archive_send(campaign_id=campaign_id)
    except WebVersionMissing as exc:
        return _page(request, "message_unavailable", {"message": str(exc)}, status=404)
    return _message_page(archive_render(send=send))


def _message_page(rendered: RenderedMessage) -> HttpResponse:
    text_only = f"<!doctype html><meta charset=utf-8><pre>{escape(rendered.text)}</pre>"
    body = rendered.html or text_only
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = _MESSAGE_POLICY
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
