"""Postmark as a channel, through its batch endpoint: up to 500 messages in one API call.

``POST /email/batch`` takes an array of individually rendered messages and answers an array
of results in the same order, each with its own ``ErrorCode`` (0: accepted, with its
``MessageID``). The JSON for each message is what anymail's Postmark backend builds for a
single send (``PostmarkPayload``), so headers, stream and addresses match that path exactly;
the call goes over the backend's one ``requests.Session`` with the server token header.

Anymail parses every address of every message (about 0.6 ms, more than the rest of the
delivery loop), and only the recipient's fields differ between the messages of a send. So
anymail builds the first message of a batch, which becomes the template (From, Reply-To,
stream, as anymail wrote them); later messages with a plain ASCII recipient fill in their own
fields, which the tests check equal anymail's. Anything unusual goes through anymail.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urljoin

import requests
from anymail.exceptions import AnymailError
from django.core.mail import EmailMultiAlternatives
from django.utils.html import strip_tags

from campaigns.services.channels.base import ChannelResult, Composed, Outcome, Outgoing
from campaigns.services.channels.esp import (
    AnymailChannel,
    http_failure,
    network_failure,
    postmark_result,
    response_text,
)

# Postmark's documented maximum per batch call (and 50 MB per call, far above our messages).
POSTMARK_BATCH_MAX = 500
# The fields of a message that are the recipient's own; the rest is the send's.
_OWN_FIELDS = ("To", "Subject", "TextBody", "HtmlBody", "Headers")
# A display name anymail writes as it is (no quoting, no encoding), and a plain address.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 ]*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")


class PostmarkBatchChannel(AnymailChannel):
    max_batch = POSTMARK_BATCH_MAX

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The token and the send's fields, as anymail built them for a message of this frame.
        self._template: tuple[object, str, dict[str, Any]] | None = None

    def compose(self, message: Outgoing) -> Composed:
        template = self._template
        if template is not None and template[0] is message.frame and _plain(message):
            token, fields = template[1], template[2]
            return Composed(message, (token, {**fields, **postmark_own_fields(message)}))
        token, data = self._anymail_payload(message)
        shared = {name: value for name, value in data.items() if name not in _OWN_FIELDS}
        self._template = (message.frame, token, shared)
        return Composed(message, (token, data))

    def _anymail_payload(self, message: Outgoing) -> tuple[str, dict[str, Any]]:
        email = super().compose(message).payload
        assert isinstance(email, EmailMultiAlternatives)
        try:
            payload = self.backend.build_message_payload(email, self.backend.send_defaults)
        except AnymailError as exc:
            raise ValueError(str(exc).splitlines()[0]) from exc
        return str(payload.server_token), dict(payload.data)

    def send(self, batch: list[Composed]) -> list[ChannelResult]:
        """One call for the whole batch; one result per message, in order."""
        if not batch:
            return []
        token, _ = self._payload(batch[0])
        body = [self._payload(composed)[1] for composed in batch]
        try:
            response = self.backend.session.post(
                urljoin(self.backend.api_url, "email/batch"),
                data=json.dumps(body).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "X-Postmark-Server-Token": token,
                },
                timeout=self.backend.timeout,
            )
        except requests.RequestException as exc:
            return [network_failure(exc)] * len(batch)
        return batch_results(response, len(batch))

    @staticmethod
    def _payload(composed: Composed) -> tuple[str, dict[str, Any]]:
        payload = composed.payload
        assert isinstance(payload, tuple)
        return payload


def _plain(message: Outgoing) -> bool:
    name = " ".join(message.to_name.split())
    return bool(
        _PLAIN_NAME.fullmatch(name)
        and _PLAIN_ADDRESS.fullmatch(message.to_email)
        and message.message_id.isascii()
        and message.unsubscribe_url.isascii()
    )


def postmark_own_fields(message: Outgoing) -> dict[str, Any]:
    """The recipient's fields of a message, as anymail writes them for a plain recipient."""
    name = " ".join(message.to_name.split())
    rendered = message.rendered
    fields: dict[str, Any] = {
        "To": f"{name} <{message.to_email}>" if name else message.to_email,
        "Subject": rendered.subject,
        "Headers": [
            {"Name": "Message-ID", "Value": message.message_id},
            {"Name": "List-Unsubscribe", "Value": f"<{message.unsubscribe_url}>"},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            {"Name": "X-Opsdash-Campaign", "Value": str(message.frame.compiled.campaign_id)},
        ],
        "TextBody": rendered.text or strip_tags(rendered.html),
    }
    if rendered.html:
        fields["HtmlBody"] = rendered.html
    return fields


def batch_results(response: requests.Response, count: int) -> list[ChannelResult]:
    """Maps a ``/email/batch`` answer back to its ``count`` messages."""
    if response.status_code != 200:
        answer = _json(response)
        if response.status_code == 422 and isinstance(answer, dict) and "ErrorCode" in answer:
            return [postmark_result(answer)] * count  # the whole call refused, by its code
        return [http_failure(response.status_code, response_text(response))] * count
    answer = _json(response)
    if not isinstance(answer, list) or len(answer) != count:
        # Not what Postmark documents: the messages may or may not be there, so like a
        # timeout they are retried (a duplicate beats a loss).
        text = f"unexpected batch answer: {response_text(response)}"
        return [ChannelResult(Outcome.TRANSIENT, 200, text)] * count
    return [postmark_result(one if isinstance(one, dict) else {"ErrorCode": -1}) for one in answer]


def _json(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
