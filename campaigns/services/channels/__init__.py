"""Sending channels: the SMTP relay or any ESP django-anymail supports.

The batch loop renders each message and hands it to its send's channel (``channel_for``);
only the channel knows SMTP or HTTP. Channels are configured in settings.OPSDASH_CHANNELS.
"""

from __future__ import annotations

from campaigns.services.channels.base import (
    Channel,
    ChannelResult,
    Composed,
    Outcome,
    Outgoing,
)
from campaigns.services.channels.config import (
    ChannelConfig,
    channel_config,
    channel_default,
    channel_names,
    channels_configured,
    channels_parse,
)

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelResult",
    "Composed",
    "Outcome",
    "Outgoing",
    "channel_config",
    "channel_default",
    "channel_for",
    "channel_names",
    "channels_configured",
    "channels_parse",
]


def channel_for(name: str) -> Channel:
    """A fresh channel for one batch (its connections are the batch's); "" is the default."""
    from campaigns.services.channels.esp import AnymailChannel
    from campaigns.services.channels.postmark import PostmarkBatchChannel
    from campaigns.services.channels.smtp import SmtpChannel

    config = channel_config(name)
    if config.is_smtp:
        return SmtpChannel(config.name)
    if config.backend == "postmark":
        return PostmarkBatchChannel(config)
    return AnymailChannel(config)
