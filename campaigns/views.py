"""Public endpoints. Only unsubscribe: GET asks, POST acts (RFC 8058 one-click included)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.services.audiences import InvalidToken, recipient_unsubscribe, unsubscribe_token_read


# Mail providers POST the one-click request without cookies or a CSRF token; the HMAC-signed
# token in the URL is the proof instead.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        recipient_id = unsubscribe_token_read(token)
    except InvalidToken as exc:
        return render(
            request, "campaigns/unsubscribe_invalid.html", {"message": str(exc)}, status=400
        )
    if request.method == "GET":
        # Link scanners fetch URLs: a GET only shows the confirmation form.
        return render(request, "campaigns/unsubscribe_confirm.html", {"token": token})
    recipient_unsubscribe(recipient_id=recipient_id)
    return render(request, "campaigns/unsubscribe_done.html")
