"""Which mailbox provider receives an address: a maintained table of the providers' consumer
domains, confirmed for any other domain by its MX records when OPSDASH_PACING_MX_LOOKUP is on.

A company on Google Workspace or Microsoft 365 keeps its own domain, so only its MX records
tell that Gmail's or Outlook's limits apply to it. Looking them up costs a DNS round trip, so
answers are kept in the Django cache (shared by every worker) and in a memo of this process;
the lookup is off by default because the batch loop must not wait for DNS on a cold cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.cache import cache
from django.db import models

logger = logging.getLogger(__name__)


class Provider(models.TextChoices):
    GOOGLE = "google", "Google"
    MICROSOFT = "microsoft", "Microsoft"
    YAHOO = "yahoo", "Yahoo/AOL"
    APPLE = "apple", "Apple"
    GMX = "gmx", "GMX/Web.de"
    OTHER = "other", "Other"


def _table(provider: Provider, domains: Iterable[str]) -> dict[str, Provider]:
    return dict.fromkeys(domains, provider)


# The consumer domains of each provider, country variants included. A domain not listed here
# is OTHER unless its MX records say otherwise (MX_PATTERNS).
PROVIDER_DOMAINS: dict[str, Provider] = {
    **_table(Provider.GOOGLE, ("gmail.com", "googlemail.com", "google.com")),
    **_table(
        Provider.MICROSOFT,
        (
            "outlook.com", "outlook.de", "outlook.fr", "outlook.es", "outlook.it",
            "outlook.co.uk", "outlook.at", "outlook.be", "outlook.com.au", "outlook.jp",
            "hotmail.com", "hotmail.co.uk", "hotmail.de", "hotmail.fr", "hotmail.it",
            "hotmail.es", "hotmail.nl", "hotmail.be", "hotmail.ch", "hotmail.se",
            "hotmail.com.br", "hotmail.ca", "live.com", "live.co.uk", "live.de", "live.fr",
            "live.nl", "live.it", "live.be", "live.ca", "live.com.au", "msn.com",
            "windowslive.com", "passport.com",
        ),
    ),
    **_table(
        Provider.YAHOO,
        (
            "yahoo.com", "yahoo.co.uk", "yahoo.de", "yahoo.fr", "yahoo.it", "yahoo.es",
            "yahoo.ca", "yahoo.com.au", "yahoo.co.jp", "yahoo.co.in", "yahoo.com.br",
            "yahoo.com.mx", "yahoo.ie", "yahoo.se", "ymail.com", "rocketmail.com",
            "aol.com", "aol.co.uk", "aol.de", "aol.fr", "aim.com", "verizon.net",
            "att.net", "sbcglobal.net",
        ),
    ),
    **_table(Provider.APPLE, ("icloud.com", "me.com", "mac.com")),
    **_table(
        Provider.GMX,
        (
            "gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.com", "gmx.co.uk", "gmx.fr",
            "gmx.es", "gmx.us", "web.de", "email.de", "mail.com",
        ),
    ),
}  # fmt: skip

# Suffixes of MX hosts (lower case, no trailing dot) and the provider running them.
MX_PATTERNS: tuple[tuple[str, Provider], ...] = (
    ("google.com", Provider.GOOGLE),
    ("googlemail.com", Provider.GOOGLE),
    ("protection.outlook.com", Provider.MICROSOFT),
    ("outlook.com", Provider.MICROSOFT),
    ("yahoodns.net", Provider.YAHOO),
    ("icloud.com", Provider.APPLE),
    ("gmx.net", Provider.GMX),
    ("web.de", Provider.GMX),
)

# Given a domain, its MX host names; raises when DNS gives no answer.
Resolver = Callable[[str], list[str]]

MX_CACHE_SECONDS = 86_400
_MX_FAILED_SECONDS = 3_600  # a domain whose lookup failed is asked again after an hour
_memo: dict[str, Provider] = {}
_memo_lock = threading.Lock()


def dns_mx_hosts(domain: str) -> list[str]:
    """The domain's MX hosts from DNS (dnspython), with a short timeout."""
    import dns.resolver

    answer = dns.resolver.resolve(domain, "MX", lifetime=settings.OPSDASH_PACING_MX_TIMEOUT)
    return [str(record.exchange).rstrip(".").lower() for record in answer]


_resolver: Resolver = dns_mx_hosts


def resolver_set(resolver: Resolver | None) -> None:
    """Replaces the DNS lookup (tests pass a fake one; None restores DNS) and forgets answers."""
    global _resolver
    _resolver = resolver or dns_mx_hosts
    with _memo_lock:
        _memo.clear()


def provider_of_mx(hosts: Iterable[str]) -> Provider:
    """The provider running these MX hosts; OTHER when none matches."""
    for host in hosts:
        name = host.rstrip(".").lower()
        for suffix, provider in MX_PATTERNS:
            if name == suffix or name.endswith("." + suffix):
                return provider
    return Provider.OTHER


def provider_of_domain(domain: str, *, lookup: bool = True) -> Provider:
    """The provider of a domain: the table first, then (when enabled) its MX records.

    ``lookup=False`` (a page) uses only answers already known, never asking DNS."""
    domain = domain.strip().lower().rstrip(".")
    if (known := PROVIDER_DOMAINS.get(domain)) is not None:
        return known
    if not settings.OPSDASH_PACING_MX_LOOKUP or not domain:
        return Provider.OTHER
    if (memo := _memo.get(domain)) is not None:
        return memo
    provider = _mx_cached(domain, lookup=lookup)
    if not lookup:
        return provider
    with _memo_lock:
        _memo[domain] = provider
    return provider


def _mx_cached(domain: str, *, lookup: bool) -> Provider:
    key = f"pacing:mx:{domain}"
    try:
        cached = cache.get(key)
    except Exception:  # the cache (Redis) is out: DNS still answers
        cached = None
    if cached in Provider.values:
        return Provider(cached)
    if not lookup:
        return Provider.OTHER
    try:
        provider, ttl = provider_of_mx(_resolver(domain)), MX_CACHE_SECONDS
    except Exception as exc:  # no MX, NXDOMAIN, timeout: counted as OTHER for a while
        logger.info("MX lookup for %s failed: %s", domain, exc)
        provider, ttl = Provider.OTHER, _MX_FAILED_SECONDS
    try:
        cache.set(key, provider.value, ttl)
    except Exception:
        logger.info("Cannot cache the MX provider of %s", domain)
    return provider


def provider_of(email: str) -> Provider:
    """The provider of an address's domain; OTHER for a domain nobody runs that we know."""
    return provider_of_domain(email.rpartition("@")[2])
