"""What the batch loop hands a channel, and what a channel answers for each message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from campaigns.services.mime import WireFrame
from campaigns.services.rendering import RenderedMessage
from campaigns.services.smtp import Outcome, SmtpResult

__all__ = ["Channel", "ChannelResult", "Composed", "Outcome", "Outgoing"]


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one delivery row; the channel decides its wire form."""

    delivery_id: int
    frame: WireFrame
    rendered: RenderedMessage
    to_email: str
    to_name: str
    message_id: str
    unsubscribe_url: str


@dataclass(frozen=True)
class Composed:
    """A message in the channel's own form (SMTP bytes, an anymail message, a JSON dict)."""

    outgoing: Outgoing
    payload: object


@dataclass(frozen=True)
class ChannelResult:
    """What became of one message: the loop records it on the row, whatever the channel."""

    outcome: Outcome
    code: int
    text: str
    # False when the message never reached the server (no connection, the API throttled the
    # whole call, the ESP is down): the attempt does not count against the row, the row goes
    # back to the queue and the batch retries with backoff. Never a failure.
    attempted: bool = True
    esp_message_id: str = ""
    # The server or the ESP asked us to slow down (SMTP 421, 4.7.x, HTTP 429): the provider's
    # rate shrinks, and the row goes back to the queue without counting an attempt.
    throttled: bool = False

    @property
    def summary(self) -> str:
        return f"{self.code} {self.text}".strip()[:500]

    @classmethod
    def of_smtp(cls, result: SmtpResult) -> ChannelResult:
        return cls(
            result.outcome,
            result.code,
            result.text,
            attempted=result.attempted,
            throttled=result.throttled,
        )


class Channel(ABC):
    """Sends composed messages; the only part of delivery that knows SMTP or HTTP.

    ``send`` takes at most ``max_batch`` messages and answers one result per message, in
    order. It never raises for what the server or the network did.
    """

    max_batch = 1
    # The prefix of this channel's rate-limit buckets (None: the SMTP relay's own buckets).
    bucket_prefix: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self._done: list[tuple[int, list[ChannelResult]]] = []

    @property
    def connections(self) -> int:
        """Groups the channel can have in flight at once (``submit`` before ``collect``)."""
        return 1

    def submit(self, token: int, batch: list[Composed]) -> None:
        """Starts sending a group; ``collect`` answers its results under ``token``.

        Here the group is sent before this returns (one call at a time); a channel with
        several connections overrides this and ``collect``.
        """
        self._done.append((token, self.send(batch)))

    def collect(self, timeout: float | None) -> list[tuple[int, list[ChannelResult]]]:
        """The groups finished since the last call, waiting up to ``timeout`` seconds for
        one when none is (None or 0: no wait)."""
        done, self._done = self._done, []
        return done

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def compose(self, message: Outgoing) -> Composed:
        """The message in this channel's form; raises for data that cannot make a message."""

    @abstractmethod
    def send(self, batch: list[Composed]) -> list[ChannelResult]: ...
