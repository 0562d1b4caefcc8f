"""One batch's pacer: every limit a message must pass, asked without sleeping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from campaigns.models import Send
from campaigns.services import ratelimit
from campaigns.services.channels import Channel, ChannelResult
from campaigns.services.pacing.providers import Provider


class WaitReason(StrEnum):
    RATE = "rate"  # a rate limit: tokens come back within seconds or minutes
    WARMUP = "warmup"  # the warm-up plan's quota for today is spent: back tomorrow


@dataclass(frozen=True)
class Grant:
    """The pacer's answer for ``n`` messages to one provider."""

    granted: bool
    wait: float = 0.0  # seconds until asking again makes sense (when not granted)
    reason: WaitReason = WaitReason.RATE


GRANTED = Grant(True)


class Pacer:
    """The limits of one send on one channel, shared by every worker through Redis."""

    def __init__(self, *, send: Send, channel: Channel) -> None:
        self.send = send
        self.channel = channel
        self.buckets = _buckets(send, channel)

    @property
    def capacities(self) -> list[float]:
        """The burst sizes of the buckets every message passes (a group never exceeds them)."""
        return [spec.capacity for spec in self.buckets]

    def take(self, provider: Provider, n: int = 1) -> Grant:
        """Takes ``n`` messages' worth of every limit for ``provider``; never sleeps."""
        for spec in self.buckets:
            if (wait := ratelimit.try_take(spec, n)) > 0:
                return Grant(False, wait)
        return GRANTED

    def observe(self, provider: Provider, result: ChannelResult) -> None:
        """What the channel answered for one message to ``provider``."""

    def sync(self) -> None:
        """Writes what ``observe`` gathered (called with every flush of outcomes)."""


def _buckets(send: Send, channel: Channel) -> list[ratelimit.BucketSpec]:
    """The rate buckets of the send; an ESP channel's server buckets are its own, not the
    SMTP relay's (the same configured rates, counted per channel)."""
    specs = ratelimit.buckets_for(
        campaign_id=send.campaign_id, campaign_per_minute=send.campaign.rate_limit_per_minute
    )
    if channel.bucket_prefix is None:
        return specs
    server = f"smtp:{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return [
        dataclasses.replace(spec, name=spec.name.replace(server, channel.bucket_prefix, 1))
        for spec in specs
    ]
