"""ESP tracking webhooks at /anymail/<esp>/tracking/, in django-anymail's documented layout.

Each of anymail's tracking views is wrapped: anymail still checks the request (basic auth,
the ESP's signature) and parses the ESP's payload, and the wrapper decides the answer and
stores what anymail found in one statement. Anymail's own ``post`` is not called: it would
send each event through its ``tracking`` signal one by one and answer a bad signature and a
bad payload alike with 400 (its SuspiciousOperation), where ESPs and staff need to tell a
secret that is wrong (401/403, counted as an auth failure) from a payload that is (400).

    401  wrong or missing basic auth (ANYMAIL["WEBHOOK_SECRET"]), with WWW-Authenticate
    403  the ESP's signature does not verify (Mailgun, Mailtrap, MailerSend, ...)
    400  not a payload the ESP's parser understands
    200  stored; an apply run is asked for (services.events.store)

Nothing is stored on a refusal, and each refusal is counted on the source's ChannelHealth.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent
from anymail.utils import get_anymail_setting, get_request_basic_auth
from anymail.webhooks.base import AnymailCoreWebhookView
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from campaigns.services.events.esp import event_from_anymail
from campaigns.services.events.health import Failure, health_failure_record
from campaigns.services.events.store import events_store

logger = logging.getLogger(__name__)

app_name = "anymail"  # reverse("anymail:postmark_tracking_webhook"), as anymail documents
_SUFFIX = "_tracking_webhook"
# What a payload anymail cannot read raises while being parsed.
_PAYLOAD_ERRORS = (AnymailError, KeyError, ValueError, TypeError, AttributeError, IndexError)
# Bodies that are form fields (Mailgun's legacy webhooks), not JSON.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Refused(Exception):
    """The request is answered with ``status`` and nothing is stored."""

    def __init__(self, status: int, failure: Failure, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.failure = failure


def tracking_receive(
    request: HttpRequest, *, view_class: type[AnymailCoreWebhookView], source: str, **init: Any
) -> HttpResponse:
    """Checks, parses and stores one webhook request from ``source``."""
    try:
        _basic_auth_check(request)
        view = view_class(**init)
        view.setup(request)
        _validate(view, request)
        events = _parse(view, request, source)
    except Refused as refused:
        return _refusal(request, source, refused)
    events_store(events)
    return HttpResponse()


def _basic_auth_check(request: HttpRequest) -> None:
    """Anymail's own basic-auth check, made first so a wrong secret is a 401 (Amazon SNS
    only sends credentials after a 401 asks for them)."""
    allowed = get_anymail_setting("webhook_secret", default=[])
    if isinstance(allowed, str):
        allowed = [allowed] if allowed else []
    if not allowed:
        return  # anymail warns at start-up that the webhooks are open
    given = get_request_basic_auth(request)
    if not any(constant_time_compare(given, secret) for secret in allowed):
        reason = "missing basic auth" if given is None else "wrong basic auth"
        raise Refused(401, Failure.AUTH, reason)


def _validate(view: AnymailCoreWebhookView, request: HttpRequest) -> None:
    """The ESP's own checks (signatures). A body that is not even JSON is a payload problem,
    not a signature problem, so it is refused as such before they run."""
    if request.content_type not in _FORM_TYPES:
        try:
            json.loads(request.body)
        except ValueError as exc:
            raise Refused(400, Failure.PAYLOAD, f"not JSON: {exc}") from exc
    try:
        view.run_validators(request)
    except AnymailWebhookValidationFailure as exc:
        raise Refused(403, Failure.AUTH, str(exc)) from exc
    except _PAYLOAD_ERRORS as exc:
        raise Refused(400, Failure.PAYLOAD, _reason(exc)) from exc


def _parse(view: AnymailCoreWebhookView, request: HttpRequest, source: str) -> list[Any]:
    try:
        return [
            event_from_anymail(event, source=source)
            for event in view.parse_events(request)
            if isinstance(event, AnymailTrackingEvent)
        ]
    except _PAYLOAD_ERRORS as exc:
        raise Refused(400, Failure.PAYLOAD, _reason(exc)) from exc


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _refusal(request: HttpRequest, source: str, refused: Refused) -> HttpResponse:
    logger.warning("%s webhook refused (%s): %s", source, refused.status, refused)
    health_failure_record(source=source, failure=refused.failure, text=str(refused))
    response = HttpResponse(str(refused), status=refused.status, content_type="text/plain")
    if refused.status == 401:
        response["WWW-Authenticate"] = 'Basic realm="opsdash webhooks"'
    return response


def _wrapped(pattern: URLPattern) -> URLPattern:
    callback: Any = pattern.callback
    view_class: type[AnymailCoreWebhookView] = callback.view_class
    init: dict[str, Any] = dict(callback.view_initkwargs)
    source = str(pattern.name).removesuffix(_SUFFIX)

    @csrf_exempt
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "HEAD":  # some ESPs check the URL with HEAD when it is set up
            return HttpResponse()
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST", "HEAD"])
        return tracking_receive(request, view_class=view_class, source=source, **init)

    return URLPattern(pattern.pattern, view, pattern.default_args, pattern.name)


def _tracking_patterns() -> list[URLPattern]:
    return [
        _wrapped(pattern)
        for pattern in anymail_urls.urlpatterns
        if isinstance(pattern, URLPattern) and str(pattern.name).endswith(_SUFFIX)
    ]


urlpatterns: list[Any] = list(_tracking_patterns())
