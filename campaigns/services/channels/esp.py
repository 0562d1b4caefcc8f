"""An ESP as a channel, through django-anymail's backend for it.

One backend (so one ``requests.Session``) serves a whole batch. Each message is an
``EmailMultiAlternatives`` with the headers the SMTP channel writes itself; anymail turns it
into the ESP's API call. What the ESP answered is classified like an SMTP reply:

- accepted: SENT, with the ESP's message id;
- throttled (HTTP 429, Postmark ErrorCode 429, SES ``Throttling``), the ESP failing (5xx) or
  unreachable: not attempted, so the row goes back to the queue with backoff, never failed;
- a timeout after the request left: TRANSIENT (the ESP may have it; retried like SMTP 4xx);
- the recipient inactive or suppressed at the ESP: NO_MAILBOX (failed and suppressed);
- any other refusal of the message (HTTP 4xx, Postmark ErrorCode 300): PERMANENT.
"""

from __future__ import annotations

import json
from email.headerregistry import Address
from typing import Any

import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.html import strip_tags
from urllib3.exceptions import NewConnectionError

from campaigns.services.channels.base import Channel, ChannelResult, Composed, Outcome, Outgoing
from campaigns.services.channels.config import ChannelConfig

# Postmark's documented API error codes (postmarkapp.com/developer/api/overview#error-codes).
POSTMARK_NO_MAILBOX = {406}  # inactive recipient: hard-bounced or complained before
POSTMARK_PERMANENT = {300, 301, 302, 303, 304, 400, 401, 402, 403, 409, 411, 413, 701}
# Everything else (429 rate limit, 405 out of credits, 10 bad token, 100 maintenance, 412
# account pending, codes added later) says nothing against the message: it waits and retries.

_THROTTLED_HINTS = ("throttl", "rate exceeded", "too many requests", "rate limit")
_NO_MAILBOX_HINTS = ("inactive recipient", "suppress", "inactive address")


def postmark_result(answer: dict[str, Any]) -> ChannelResult:
    """One message's entry of a Postmark answer (``/email`` or an element of ``/email/batch``)."""
    code = int(answer.get("ErrorCode", 0) or 0)
    text = str(answer.get("Message", ""))
    if code == 0:
        return ChannelResult(Outcome.SENT, 0, text, esp_message_id=str(answer.get("MessageID", "")))
    if code in POSTMARK_NO_MAILBOX:
        return ChannelResult(Outcome.NO_MAILBOX, code, text)
    if code in POSTMARK_PERMANENT:
        return ChannelResult(Outcome.PERMANENT, code, text)
    throttled = code == 429 or any(hint in text.lower() for hint in _THROTTLED_HINTS)
    return ChannelResult(Outcome.TRANSIENT, code, text, attempted=False, throttled=throttled)


def http_failure(status: int | None, text: str) -> ChannelResult:
    """A whole API call that failed, by its HTTP status (None: no answer at all)."""
    lowered = text.lower()
    throttled = status == 429 or any(hint in lowered for hint in _THROTTLED_HINTS)
    if status is None or status >= 500 or status in (401, 403, 408) or throttled:
        # Throttled, the ESP failing, or our credentials refused: nothing against the message.
        return ChannelResult(
            Outcome.TRANSIENT, status or 0, text, attempted=False, throttled=throttled
        )
    if any(hint in lowered for hint in _NO_MAILBOX_HINTS):
        return ChannelResult(Outcome.NO_MAILBOX, status, text)
    return ChannelResult(Outcome.PERMANENT, status, text)


def network_failure(exc: BaseException) -> ChannelResult:
    """No HTTP answer: no connection (not attempted), or lost after the request left (the ESP
    may have the message: an attempt, retried like an SMTP 4xx)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if _never_connected(exc):
        return ChannelResult(Outcome.TRANSIENT, 0, text, attempted=False)
    return ChannelResult(Outcome.TRANSIENT, 0, text)


def _never_connected(exc: BaseException) -> bool:
    """Whether the request failed before a connection was made (refused, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, NewConnectionError | ConnectionRefusedError):
            return True
        seen.add(id(cause))
        # requests wraps urllib3's errors in its own: in the arguments or the cause chain.
        inner = next((arg for arg in cause.args if isinstance(arg, BaseException)), None)
        cause = inner or cause.__cause__ or cause.__context__
    return False


def response_text(response: requests.Response | None) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or json.dumps(body))[:300]
    return json.dumps(body)[:300]


def anymail_error_result(exc: AnymailError) -> ChannelResult:
    """What an anymail exception of one send says about the message."""
    cause = exc.__cause__
    if isinstance(cause, requests.RequestException) and exc.response is None:
        return network_failure(cause)
    code = _aws_error_code(cause)
    if code:  # Amazon SES through boto3: ClientError codes, no HTTP status to go by
        throttled = code in ("Throttling", "ThrottlingException", "TooManyRequestsException")
        if throttled or code.startswith("ServiceUnavailable"):
            return ChannelResult(Outcome.TRANSIENT, 0, f"{code}: {cause}", attempted=False)
        return ChannelResult(Outcome.PERMANENT, 0, f"{code}: {cause}")
    response = exc.response if isinstance(exc.response, requests.Response) else None
    if response is not None and exc.esp_name == "Postmark":
        answer = _json_or_none(response)
        if isinstance(answer, dict) and "ErrorCode" in answer and response.status_code == 422:
            return postmark_result(answer)
    text = response_text(response) or str(exc).splitlines()[0][:300]
    return http_failure(exc.status_code, text)


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _aws_error_code(cause: BaseException | None) -> str:
    found = getattr(cause, "response", None)
    if isinstance(found, dict):
        return str(found.get("Error", {}).get("Code", ""))
    return ""


def esp_message(message: Outgoing, *, stream: str = "") -> EmailMultiAlternatives:
    """The anymail message for one delivery: the SMTP channel's headers, the stream if any."""
    compiled = message.frame.compiled
    name = " ".join(message.to_name.split())
    email = EmailMultiAlternatives(
        subject=message.rendered.subject,
        body=message.rendered.text or strip_tags(message.rendered.html),
        from_email=compiled.from_email,
        # Address, not formataddr: an internationalised domain is anymail's to encode (IDNA).
        to=[str(Address(display_name=name, addr_spec=message.to_email))],
        reply_to=[compiled.reply_to] if compiled.reply_to else None,
        headers={
            "Message-ID": message.message_id,
            "List-Unsubscribe": f"<{message.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Opsdash-Campaign": str(compiled.campaign_id),
        },
    )
    if message.rendered.html:
        email.attach_alternative(message.rendered.html, "text/html")
    if stream:
        email.esp_extra = {"MessageStream": stream}  # type: ignore[attr-defined]
    return email


class AnymailChannel(Channel):
    """Any anymail ESP, one API call per message over the backend's one session."""

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self.bucket_prefix = f"channel:{config.name}"
        self.backend: Any = get_connection(config.backend_path)

    def open(self) -> None:
        self.backend.open()

    def close(self) -> None:
        self.backend.close()

    def compose(self, message: Outgoing) -> Composed:
        return Composed(message, esp_message(message, stream=self.config.stream))

    def send(self, batch: list[Composed]) -> list[ChannelResult]:
        return [self._send_one(composed) for composed in batch]

    def _send_one(self, composed: Composed) -> ChannelResult:
        email = composed.payload
        assert isinstance(email, EmailMultiAlternatives)
        try:
            self.backend.send_messages([email])
        except AnymailRecipientsRefused:
            return _refused(email, composed.outgoing.to_email)
        except AnymailAPIError as exc:
            return anymail_error_result(exc)
        except AnymailError as exc:  # anymail refused to build the message: it never will
            return ChannelResult(Outcome.PERMANENT, 0, str(exc).splitlines()[0][:300])
        status = email.anymail_status  # type: ignore[attr-defined]
        return ChannelResult(
            Outcome.SENT,
            200,
            f"accepted by {self.config.backend}",
            esp_message_id=str(status.message_id or ""),
        )


def _refused(email: EmailMultiAlternatives, address: str) -> ChannelResult:
    """The ESP refused the recipient: inactive/suppressed there (rejected) or invalid."""
    recipients = email.anymail_status.recipients  # type: ignore[attr-defined]
    status = recipients.get(address) or next(iter(recipients.values()), None)
    text = str(getattr(status, "status", "refused"))
    esp_response = getattr(email.anymail_status, "esp_response", None)  # type: ignore[attr-defined]
    detail = response_text(esp_response) if isinstance(esp_response, requests.Response) else ""
    outcome = Outcome.NO_MAILBOX if text == "rejected" else Outcome.PERMANENT
    code = esp_response.status_code if isinstance(esp_response, requests.Response) else 0
    return ChannelResult(outcome, code, f"recipient {text}: {detail}".strip()[:300])
