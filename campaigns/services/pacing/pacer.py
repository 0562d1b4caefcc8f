"""One batch's pacer: every limit a message must pass, asked without sleeping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.utils import timezone

from campaigns.models import Send, Warmup
from campaigns.services import ratelimit
from campaigns.services.channels import Channel, ChannelResult
from campaigns.services.pacing.aimd import Tally, provider_limits, rates_read, tallies_apply
from campaigns.services.pacing.providers import Provider
from campaigns.services.pacing.warmup import Clock, warmup_quotas, warmups_for
from campaigns.services.smtp import Outcome


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
    """The limits of one send on one channel, shared by every worker through Redis.

    ``take`` checks every bucket of a message at once (the relay's rate, the campaign's cap,
    the provider's adaptive rate and its hourly/daily caps, the warm-up quota) and takes from
    all or none, in one Redis round trip. ``observe`` only counts in memory (it runs for every
    message); ``sync`` writes the counts and the providers' rate changes in one round trip and
    brings this pacer's view of the rates up to date.
    """

    def __init__(self, *, send: Send, channel: Channel, clock: Clock = timezone.now) -> None:
        self.send = send
        self.channel = channel
        self.channel_name = send.channel or channel.name or "default"
        self.clock = clock
        self.buckets = _buckets(send, channel)
        self.warmups: list[Warmup] = warmups_for(send=send, channel_name=self.channel_name)
        self.rates: dict[Provider, float] = {}
        self.tallies: dict[Provider, Tally] = {}

    @property
    def capacities(self) -> list[float]:
        """The burst sizes of the buckets every message passes (a group never exceeds them).

        A provider's adaptive bucket is not among them: its burst follows its rate, and a
        group larger than it is let through once the bucket is full, in debt the refill repays.
        """
        return [spec.capacity for spec in self.buckets]

    def take(self, provider: Provider, n: int = 1) -> Grant:
        """Takes ``n`` messages' worth of every limit for ``provider``; never sleeps."""
        now = self.clock()
        quotas = warmup_quotas(self.warmups, provider, now=now) if self.warmups else []
        taken = ratelimit.take_all(self.buckets + self.provider_buckets(provider), n, quotas)
        if taken.wait <= 0:
            return GRANTED
        return Grant(False, taken.wait, WaitReason.WARMUP if taken.quota else WaitReason.RATE)

    def provider_buckets(self, provider: Provider) -> list[ratelimit.BucketSpec]:
        limits = provider_limits(provider)
        name = f"pacing:{self.channel_name}:{provider.value}"
        specs = []
        if limits.adaptive:
            rate = self.rate(provider)
            specs.append(ratelimit.BucketSpec(f"{name}:s", rate, max(1.0, rate)))
        if limits.per_hour:
            specs.append(
                ratelimit.BucketSpec(f"{name}:h", limits.per_hour / 3600, float(limits.per_hour))
            )
        if limits.per_day:
            specs.append(
                ratelimit.BucketSpec(f"{name}:d", limits.per_day / 86400, float(limits.per_day))
            )
        return specs

    def rate(self, provider: Provider) -> float:
        """The provider's current rate as this pacer last read or wrote it."""
        if provider not in self.rates:
            self.rates.update(rates_read(self.channel_name, [provider]))
        return self.rates[provider]

    def observe(self, provider: Provider, result: ChannelResult) -> None:
        """What the channel answered for one message to ``provider`` (counted in memory)."""
        tally = self.tallies.get(provider) or self.tallies.setdefault(provider, Tally())
        if result.throttled:
            tally.deferred += 1
        elif result.outcome is Outcome.SENT:
            tally.ok += 1

    @property
    def deferred(self) -> bool:
        """Whether a deferral was observed since the last sync (it cuts the shared rate)."""
        return any(tally.deferred for tally in self.tallies.values())

    def sync(self) -> None:
        """Writes what ``observe`` gathered (called with every flush of outcomes)."""
        tallies, self.tallies = self.tallies, {}
        if tallies:
            self.rates.update(tallies_apply(self.channel_name, tallies))


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
