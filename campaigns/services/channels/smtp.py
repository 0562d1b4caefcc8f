"""The SMTP relay as a channel: one session per batch, VERP envelope senders, DKIM-signed bytes."""

from __future__ import annotations

from campaigns.services.channels.base import Channel, ChannelResult, Composed, Outgoing
from campaigns.services.dkim import dkim_sign
from campaigns.services.mime import wire_message
from campaigns.services.smtp import SmtpSession
from campaigns.services.verp import verp_envelope_from


class SmtpChannel(Channel):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.session = SmtpSession()

    def open(self) -> None:
        """The session opens with the first message (and reopens after a drop)."""

    def close(self) -> None:
        self.session.close()

    def compose(self, message: Outgoing) -> Composed:
        data = wire_message(
            message.frame,
            message.rendered,
            to_email=message.to_email,
            to_name=message.to_name,
            message_id=message.message_id,
            unsubscribe_url=message.unsubscribe_url,
        )
        return Composed(message, dkim_sign(data))

    def send(self, batch: list[Composed]) -> list[ChannelResult]:
        return [self._send_one(composed) for composed in batch]

    def _send_one(self, composed: Composed) -> ChannelResult:
        message = composed.outgoing
        assert isinstance(composed.payload, bytes)
        # A bounce comes back to an address naming the delivery (VERP) when a bounce domain
        # is configured; otherwise to the campaign's From address.
        verp = verp_envelope_from(delivery_id=message.delivery_id) if message.delivery_id else None
        sender = verp or message.frame.envelope_from
        result = self.session.send(
            from_addr=sender, to_addr=message.to_email, data=composed.payload
        )
        return ChannelResult.of_smtp(result)
