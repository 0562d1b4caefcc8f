"""A DNS of the test's own for the pre-flight checks: DNS is outside the system, so the tests
answer its lookups themselves and nothing touches the network."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_django import Settings

from campaigns.services import preflight
from campaigns.services.preflight import DnsUnavailable

SELECTOR = "s2026"


@dataclass
class FakeResolver:
    records: dict[str, list[str]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # names whose lookups time out
    asked: list[str] = field(default_factory=list)

    def resolve(self, name: str, rdtype: str) -> list[str]:
        assert rdtype == "TXT"
        self.asked.append(name)
        if name in self.down:
            raise DnsUnavailable("the DNS lookup timed out")
        return list(self.records.get(name, []))


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def dkim_record(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


@pytest.fixture(scope="session")
def dkim_key() -> rsa.RSAPrivateKey:
    # Generated for the run: no private key is ever committed.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def domain() -> str:
    """A domain of this test alone, so answers cached by another test never meet it."""
    return f"d{uuid.uuid4().hex[:12]}.test"


@pytest.fixture
def good_dns(
    settings: Settings, domain: str, dkim_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeResolver]:
    """DNS on, DKIM signing as ``domain``, and every record a bulk sender needs published."""
    settings.OPSDASH_PREFLIGHT_DNS = True
    settings.OPSDASH_BOUNCE_DOMAIN = ""
    settings.OPSDASH_DKIM_DOMAIN = domain
    settings.OPSDASH_DKIM_SELECTOR = SELECTOR
    settings.OPSDASH_DKIM_PRIVATE_KEY = pem(dkim_key)
    resolver = FakeResolver(
        {
            domain: ["v=spf1 ip4:192.0.2.10 -all", "google-site-verification=abc"],
            f"{SELECTOR}._domainkey.{domain}": [dkim_record(dkim_key)],
            f"_dmarc.{domain}": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@" + domain],
        }
    )
    monkeypatch.setattr(preflight, "RESOLVER", resolver)
    yield resolver
