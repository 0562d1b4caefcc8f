"""TXT lookups for the pre-flight checks: a small resolver interface, cached answers, and the
organisational domain DMARC alignment compares.

The checks ask ``txt_lookup`` and never dnspython directly, so tests give them a resolver of
their own (no network) and every answer, "no such record" included, is cached for
``OPSDASH_PREFLIGHT_DNS_CACHE_SECONDS``: a campaign page drawn many times asks DNS once. A lookup
that times out or whose server fails says nothing about the record: it is remembered for a few
seconds only, and reaches the checks as ``DnsUnavailable``, which they report as "could not
check".
"""

from __future__ import annotations

from typing import Protocol

import dns.exception
import dns.resolver
from django.conf import settings
from django.core.cache import cache

_CACHE_PREFIX = "opsdash:preflight:dns:"
_UNAVAILABLE_SECONDS = 30

# The public suffixes with two labels that senders meet most: under them the organisational
# domain has three labels (shop.co.uk). A full Public Suffix List is not a dependency here;
# a suffix missing from this list makes the check compare one label too few, so it can only
# call aligned two domains of the same registry, never misalign two of one organisation.
TWO_LABEL_SUFFIXES = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk",
        "com.au", "net.au", "org.au", "edu.au", "gov.au",
        "co.nz", "org.nz", "net.nz",
        "co.jp", "ne.jp", "or.jp", "ac.jp",
        "co.za", "org.za",
        "com.br", "net.br", "org.br",
        "com.mx", "com.ar", "com.tr", "com.cn", "com.hk", "com.sg", "com.tw",
        "co.in", "net.in", "org.in",
        "co.il", "co.kr", "or.kr",
        "com.pl", "com.es", "co.at", "or.at",
    }
)  # fmt: skip


class DnsUnavailable(Exception):
    """The lookup could not be answered (timeout, server failure): the record is unknown."""


class TxtResolver(Protocol):
    """Answers TXT lookups: one string per record (its character-strings joined), an empty
    list when the name or the record does not exist; raises DnsUnavailable otherwise."""

    def resolve(self, name: str, rdtype: str) -> list[str]: ...


class DnspythonResolver:
    """The system's resolvers through dnspython (or the given servers), each lookup bounded."""

    def __init__(self, nameservers: list[str] | None = None, port: int = 53) -> None:
        self.nameservers = nameservers
        self.port = port

    def resolve(self, name: str, rdtype: str) -> list[str]:
        try:
            # Built per lookup, inside the try: a missing resolv.conf is "could not check" too.
            resolver = dns.resolver.Resolver(configure=self.nameservers is None)
            if self.nameservers is not None:
                resolver.nameservers = list(self.nameservers)
                resolver.port = self.port
            answer = resolver.resolve(
                name, rdtype, lifetime=settings.OPSDASH_PREFLIGHT_DNS_TIMEOUT_SECONDS
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(_reason(exc)) from exc
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _reason(exc: Exception) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "the DNS lookup timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no DNS server answered"
    return f"the DNS lookup failed ({type(exc).__name__})"


def txt_lookup(resolver: TxtResolver, name: str) -> list[str]:
    """The TXT records at ``name``, from the cache when asked recently.

    A lookup that could not be answered is remembered for a short while only
    (``_UNAVAILABLE_SECONDS``): while DNS is down, pages that show the checks do not each wait
    for the timeout again, and a Re-check asks at once.
    """
    name = name.strip(".").lower()
    key = _cache_key(name)
    cached = cache.get(key)
    if isinstance(cached, list):
        return [str(record) for record in cached]
    if isinstance(cached, dict):
        raise DnsUnavailable(str(cached.get("unavailable", "the DNS lookup failed")))
    try:
        records = resolver.resolve(name, "TXT")
    except DnsUnavailable as exc:
        cache.set(key, {"unavailable": str(exc)}, _UNAVAILABLE_SECONDS)
        raise
    cache.set(key, records, settings.OPSDASH_PREFLIGHT_DNS_CACHE_SECONDS)
    return records


def txt_forget(names: list[str]) -> None:
    """Drops the cached answers for ``names``: a re-check after publishing a record."""
    cache.delete_many([_cache_key(name.strip(".").lower()) for name in names])


def _cache_key(name: str) -> str:
    return f"{_CACHE_PREFIX}TXT:{name}"


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 3.2) of ``domain``: its registrable part."""
    labels = domain.strip(".").lower().split(".")
    keep = 3 if ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def domain_of(address: str) -> str:
    """The domain of an address (a bare one or ``Name <addr>``), lower-case, or ""."""
    from email.utils import parseaddr

    return parseaddr(address)[1].rpartition("@")[2].strip().lower().strip(".")
