"""Which provider receives an address: the domain table, then the domain's MX records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from pytest_django import Settings

from campaigns.services.pacing import providers
from campaigns.services.pacing.providers import Provider, provider_of, provider_of_mx


class FakeResolver:
    """Answers MX questions from a dict and counts them (no network)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, domain: str) -> list[str]:
        self.asked.append(domain)
        if domain not in self.answers:
            raise LookupError(f"NXDOMAIN {domain}")
        return self.answers[domain]


@pytest.fixture
def resolver(settings: Settings) -> Iterator[FakeResolver]:
    settings.OPSDASH_PACING_MX_LOOKUP = True
    fake = FakeResolver({})
    providers.resolver_set(fake)
    yield fake
    providers.resolver_set(None)


def unique(domain: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{domain}"


@pytest.mark.parametrize(
    ("email", "provider"),
    [
        ("a@gmail.com", Provider.GOOGLE),
        ("a@GoogleMail.com", Provider.GOOGLE),
        ("a@hotmail.co.uk", Provider.MICROSOFT),
        ("a@outlook.de", Provider.MICROSOFT),
        ("a@live.fr", Provider.MICROSOFT),
        ("a@yahoo.co.uk", Provider.YAHOO),
        ("a@ymail.com", Provider.YAHOO),
        ("a@aol.com", Provider.YAHOO),
        ("a@icloud.com", Provider.APPLE),
        ("a@me.com", Provider.APPLE),
        ("a@web.de", Provider.GMX),
        ("a@gmx.at", Provider.GMX),
        ("a@gmx.ch", Provider.GMX),
        ("a@example.com", Provider.OTHER),
    ],
)
def test_the_table_knows_the_consumer_domains_and_their_country_variants(
    email: str, provider: Provider
) -> None:
    assert provider_of(email) is provider


@pytest.mark.parametrize(
    ("hosts", "provider"),
    [
        (["aspmx.l.google.com."], Provider.GOOGLE),
        (["alt1.aspmx.l.googlemail.com"], Provider.GOOGLE),
        (["acme-com.mail.protection.outlook.com"], Provider.MICROSOFT),
        (["mta5.am0.yahoodns.net"], Provider.YAHOO),
        (["mx01.mail.icloud.com"], Provider.APPLE),
        (["mx00.gmx.net"], Provider.GMX),
        (["mx-ha03.web.de"], Provider.GMX),
        (["mail.example.net", "notgoogle.com"], Provider.OTHER),
    ],
)
def test_mx_hosts_name_the_provider_that_runs_them(hosts: list[str], provider: Provider) -> None:
    assert provider_of_mx(hosts) is provider


def test_a_workspace_domain_is_google_by_its_mx(resolver: FakeResolver) -> None:
    domain = unique("acme.com")
    resolver.answers[domain] = ["aspmx.l.google.com", "alt1.aspmx.l.google.com"]

    assert provider_of(f"ann@{domain}") is Provider.GOOGLE


def test_the_mx_answer_is_cached_in_the_process_and_in_the_shared_cache(
    resolver: FakeResolver,
) -> None:
    domain = unique("contoso.com")
    resolver.answers[domain] = ["contoso-com.mail.protection.outlook.com"]

    first = [provider_of(f"u{i}@{domain}") for i in range(5)]
    providers.resolver_set(resolver)  # forgets the process memo; the shared cache remains
    again = provider_of(f"x@{domain}")

    assert set(first) == {again} == {Provider.MICROSOFT}
    assert resolver.asked == [domain]
    assert cache.get(f"pacing:mx:{domain}") == "microsoft"


def test_a_domain_without_an_answer_is_other_and_not_asked_again_soon(
    resolver: FakeResolver,
) -> None:
    domain = unique("nowhere.invalid")

    assert provider_of(f"a@{domain}") is Provider.OTHER
    assert provider_of(f"b@{domain}") is Provider.OTHER
    assert resolver.asked == [domain]


def test_without_the_setting_no_lookup_is_made(settings: Settings) -> None:
    settings.OPSDASH_PACING_MX_LOOKUP = False
    fake = FakeResolver({"acme.org": ["aspmx.l.google.com"]})
    providers.resolver_set(fake)
    try:
        assert provider_of("a@acme.org") is Provider.OTHER
    finally:
        providers.resolver_set(None)
    assert fake.asked == []


def test_table_domains_never_ask_dns(resolver: FakeResolver) -> None:
    assert provider_of("a@gmail.com") is Provider.GOOGLE
    assert resolver.asked == []
