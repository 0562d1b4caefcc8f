"""The dashboard's pacing panel: each mailbox provider's current rate, its recent deferral
rate, and how many deliveries of running sends wait for it.

The rates and counts come from Redis (campaigns/services/pacing/aimd.py); the queue is one
query grouping the queued deliveries of running sends by the recipient's domain, mapped to
providers here. The panel is cached for PACING_CACHE_SECONDS, and Redis being out only blanks
the rates: the queue still shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from django.db.models import Count

from campaigns.models import Delivery, EmailDomain, Send, Warmup
from campaigns.selectors.cache import cache_get_or_compute
from campaigns.services.pacing.aimd import (
    channels_known,
    provider_limits,
    rates_read,
    windows_read,
)
from campaigns.services.pacing.providers import Provider, provider_of_domain

logger = logging.getLogger(__name__)

PACING_CACHE_SECONDS = 10
PACING_CACHE_KEY = "dashboard:pacing:v1"
WINDOW_MINUTES = 10


@dataclass(frozen=True)
class ChannelRate:
    channel: str
    rate: float  # messages per second


@dataclass(frozen=True)
class ProviderPace:
    """One provider's line on the panel."""

    provider: str  # a Provider value
    label: str
    rates: list[ChannelRate]  # the learned rate on each channel that sent to it lately
    start: float  # the configured start rate (0: no adaptive limit)
    ceiling: float
    accepted: int  # in the last WINDOW_MINUTES
    deferred: int
    queued: int

    @property
    def deferral_rate(self) -> float | None:
        """Deferred messages as a percentage of those handed over lately; None without any."""
        total = self.accepted + self.deferred
        return 100.0 * self.deferred / total if total else None

    @property
    def adaptive(self) -> bool:
        return self.ceiling > 0


@dataclass(frozen=True)
class PacingPanel:
    providers: list[ProviderPace]
    rates_known: bool  # False while Redis does not answer
    warmups_active: int
    window_minutes: int = WINDOW_MINUTES


def pacing_panel() -> PacingPanel:
    """The panel's numbers; cached for PACING_CACHE_SECONDS across requests."""
    return cache_get_or_compute(PACING_CACHE_KEY, PACING_CACHE_SECONDS, _compute)


def queued_by_provider() -> dict[Provider, int]:
    """Queued deliveries of running sends per provider: one query grouping by domain."""
    rows = (
        Delivery.objects.filter(status=Delivery.Status.QUEUED, send__status=Send.Status.RUNNING)
        .annotate(domain=EmailDomain("recipient__email"))
        .values("domain")
        .annotate(n=Count("id"))
        .values_list("domain", "n")
    )
    counts = dict.fromkeys(Provider, 0)
    for domain, n in rows:
        counts[provider_of_domain(domain or "", lookup=False)] += n
    return counts


def _compute() -> PacingPanel:
    providers = list(Provider)
    queued = queued_by_provider()
    rates: dict[Provider, list[ChannelRate]] = {p: [] for p in providers}
    tallies = {p: (0, 0) for p in providers}
    rates_known = True
    try:
        for channel in channels_known(providers):
            read = rates_read(channel, providers)
            for provider, tally in windows_read(channel, providers, WINDOW_MINUTES).items():
                ok, deferred = tallies[provider]
                tallies[provider] = (ok + tally.ok, deferred + tally.deferred)
                if tally.ok or tally.deferred or provider_limits(provider).adaptive:
                    rates[provider].append(ChannelRate(channel, read[provider]))
    except (redis.RedisError, OSError) as exc:
        logger.info("Pacing rates unavailable: %s", exc)
        rates_known = False
    lines = [
        ProviderPace(
            provider=p.value,
            label=str(p.label),
            rates=[r for r in rates[p] if r.rate > 0],
            start=provider_limits(p).start,
            ceiling=provider_limits(p).ceiling,
            accepted=tallies[p][0],
            deferred=tallies[p][1],
            queued=queued[p],
        )
        for p in providers
    ]
    return PacingPanel(lines, rates_known, Warmup.objects.filter(active=True).count())
