"""Postmark as a channel, through its batch endpoint: up to 500 messages in one API call.

``POST /email/batch`` takes an array of individually rendered messages and answers an array
of results in the same order, each with its own ``ErrorCode`` (0: accepted, with its
``MessageID``). The JSON for each message is what anymail's Postmark backend builds for a
single send (``PostmarkPayload``), so headers, stream and addresses match that path exactly;
the call goes over the backend's one ``requests.Session`` with the server token header.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

import requests
from anymail.exceptions import AnymailError  # type: ignore[import-untyped]
from django.core.mail import EmailMultiAlternatives

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


class PostmarkBatchChannel(AnymailChannel):
    max_batch = POSTMARK_BATCH_MAX

    def compose(self, message: Outgoing) -> Composed:
        email = super().compose(message).payload
        assert isinstance(email, EmailMultiAlternatives)
        try:
            payload = self.backend.build_message_payload(email, self.backend.send_defaults)
        except AnymailError as exc:
            raise ValueError(str(exc).splitlines()[0]) from exc
        data: dict[str, Any] = dict(payload.data)
        return Composed(message, (payload.server_token, data))

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
