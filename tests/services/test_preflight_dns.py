"""The sender-authentication checks against a DNS of the test's own (no network)."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdtypes.ANY.TXT
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from dns.rdataclass import IN
from dns.rdatatype import TXT
from pytest_django import Settings

from campaigns.models import Campaign
from campaigns.services.channels import ChannelConfig
from campaigns.services.preflight import (
    PreflightReport,
    Severity,
    preflight_dns_forget,
    preflight_run,
)
from campaigns.services.preflight.authentication import authentication_findings, sender_of
from campaigns.services.preflight.dns import DnspythonResolver, DnsUnavailable, org_domain
from tests.services.preflight_fakes import (
    SELECTOR,
    FakeResolver,
    dkim_key,
    dkim_record,
    domain,
    good_dns,
)

__all__ = ["dkim_key", "domain", "good_dns"]  # fixtures
pytestmark = pytest.mark.django_db


def campaign_from(address: str, **fields: object) -> Campaign:
    return Campaign(name="News", subject="Hi", from_email=address, text_body="Hello", **fields)


def found(report: PreflightReport) -> dict[str, Severity]:
    return {finding.code: finding.severity for finding in report.findings}


def test_a_domain_with_every_record_passes(good_dns: FakeResolver, domain: str) -> None:
    report = preflight_run(campaign=campaign_from(f"Team <news@{domain}>"))
    codes = found(report)
    for code in ("spf_ok", "dkim_ok", "dmarc_ok", "alignment_ok"):
        assert codes[code] is Severity.OK
    assert report.blocking == []


def test_a_missing_spf_record_blocks(good_dns: FakeResolver, domain: str) -> None:
    good_dns.records[domain] = ["google-site-verification=abc"]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["spf_missing"]
    [finding] = report.blocking
    assert f"TXT record at {domain}" in finding.message and "v=spf1" in finding.message


def test_two_spf_records_block(good_dns: FakeResolver, domain: str) -> None:
    good_dns.records[domain] = ["v=spf1 ip4:192.0.2.10 -all", "v=spf1 include:esp.example ~all"]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["spf_multiple"]
    assert "Merge them into one" in report.blocking[0].message


@pytest.mark.parametrize("ending", ["+all", "all"])
def test_an_spf_record_letting_everyone_send_warns(
    good_dns: FakeResolver, domain: str, ending: str
) -> None:
    good_dns.records[domain] = [f"v=spf1 ip4:192.0.2.10 {ending}"]
    codes = found(preflight_run(campaign=campaign_from(f"news@{domain}")))
    assert codes["spf_pass_all"] is Severity.WARN


def test_a_missing_dkim_key_blocks_and_says_what_to_publish(
    good_dns: FakeResolver, domain: str, dkim_key: rsa.RSAPrivateKey
) -> None:
    del good_dns.records[f"{SELECTOR}._domainkey.{domain}"]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["dkim_missing"]
    message = report.blocking[0].message
    assert f"{SELECTOR}._domainkey.{domain}" in message
    assert dkim_record(dkim_key) in message


def test_a_published_key_other_than_the_signing_key_blocks(
    good_dns: FakeResolver, domain: str
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good_dns.records[f"{SELECTOR}._domainkey.{domain}"] = [dkim_record(other)]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["dkim_key_mismatch"]


def test_a_revoked_dkim_key_blocks(good_dns: FakeResolver, domain: str) -> None:
    good_dns.records[f"{SELECTOR}._domainkey.{domain}"] = ["v=DKIM1; k=rsa; p="]
    assert preflight_run(campaign=campaign_from(f"news@{domain}")).blocking_codes == [
        "dkim_revoked"
    ]


def test_no_dkim_signing_configured_blocks(
    good_dns: FakeResolver, domain: str, settings: Settings
) -> None:
    settings.OPSDASH_DKIM_DOMAIN = settings.OPSDASH_DKIM_SELECTOR = ""
    settings.OPSDASH_DKIM_PRIVATE_KEY = ""
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["dkim_not_configured"]
    assert "OPSDASH_DKIM_SELECTOR" in report.blocking[0].message


def test_on_an_esp_channel_dkim_and_alignment_are_the_esps(
    good_dns: FakeResolver, domain: str
) -> None:
    channel = ChannelConfig(name="esp", backend="mailgun")
    sender = sender_of(from_domain=domain, channel=channel)
    codes = {f.code: f.severity for f in authentication_findings(sender, good_dns)}
    assert codes == {
        "spf_ok": Severity.OK,
        "dkim_by_esp": Severity.WARN,
        "dmarc_ok": Severity.OK,
        "alignment_by_esp": Severity.WARN,
    }
    assert f"{SELECTOR}._domainkey.{domain}" not in good_dns.asked


def test_a_missing_dmarc_record_blocks(good_dns: FakeResolver, domain: str) -> None:
    del good_dns.records[f"_dmarc.{domain}"]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["dmarc_missing"]
    assert f"_dmarc.{domain}" in report.blocking[0].message


def test_a_dmarc_policy_of_none_warns(good_dns: FakeResolver, domain: str) -> None:
    good_dns.records[f"_dmarc.{domain}"] = ["v=DMARC1; p=none"]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert found(report)["dmarc_policy_none"] is Severity.WARN
    assert report.blocking == []


@pytest.mark.parametrize(
    ("record", "code"),
    [("v=DMARC1; rua=mailto:x@y.test", "dmarc_invalid"), (None, "dmarc_multiple")],
)
def test_a_dmarc_record_without_one_valid_policy_blocks(
    good_dns: FakeResolver, domain: str, record: str | None, code: str
) -> None:
    records = [record] if record else ["v=DMARC1; p=reject", "v=DMARC1; p=none"]
    good_dns.records[f"_dmarc.{domain}"] = records
    assert preflight_run(campaign=campaign_from(f"news@{domain}")).blocking_codes == [code]


def test_a_subdomain_uses_its_organisations_dmarc_and_aligns_with_it(
    good_dns: FakeResolver, domain: str
) -> None:
    good_dns.records[f"mail.{domain}"] = ["v=spf1 ip4:192.0.2.10 -all"]
    report = preflight_run(campaign=campaign_from(f"news@mail.{domain}"))
    assert report.blocking == []
    assert f"_dmarc.mail.{domain}" in good_dns.asked and f"_dmarc.{domain}" in good_dns.asked


def test_a_dkim_domain_and_bounce_domain_of_another_organisation_fail_alignment(
    good_dns: FakeResolver, domain: str, settings: Settings
) -> None:
    other = f"other-{domain}"
    settings.OPSDASH_DKIM_DOMAIN = settings.OPSDASH_BOUNCE_DOMAIN = other
    good_dns.records[other] = ["v=spf1 ip4:192.0.2.10 -all"]
    good_dns.records[f"{SELECTOR}._domainkey.{other}"] = good_dns.records[
        f"{SELECTOR}._domainkey.{domain}"
    ]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking_codes == ["alignment_failed"]
    assert other in report.blocking[0].message


def test_an_aligned_bounce_domain_is_enough_for_alignment(
    good_dns: FakeResolver, domain: str, settings: Settings
) -> None:
    settings.OPSDASH_DKIM_DOMAIN = "esp-signing.test"
    settings.OPSDASH_BOUNCE_DOMAIN = f"bounces.{domain}"
    good_dns.records[f"bounces.{domain}"] = ["v=spf1 ip4:192.0.2.10 -all"]
    good_dns.records[f"{SELECTOR}._domainkey.esp-signing.test"] = good_dns.records[
        f"{SELECTOR}._domainkey.{domain}"
    ]
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    assert report.blocking == []
    alignment = next(f for f in report.findings if f.code == "alignment_ok")
    assert f"bounces.{domain}" in alignment.message and "DKIM" not in alignment.message


@pytest.mark.parametrize(
    ("name", "org"),
    [
        ("news.shop.co.uk", "shop.co.uk"),
        ("shop.co.uk", "shop.co.uk"),
        ("a.b.example.com", "example.com"),
        ("Example.COM.", "example.com"),
    ],
)
def test_the_organisational_domain_knows_two_label_suffixes(name: str, org: str) -> None:
    assert org_domain(name) == org


def test_answers_are_cached_even_when_there_is_no_record(
    good_dns: FakeResolver, domain: str
) -> None:
    del good_dns.records[f"_dmarc.{domain}"]
    campaign = campaign_from(f"news@{domain}")
    preflight_run(campaign=campaign)
    asked = len(good_dns.asked)
    good_dns.records[f"_dmarc.{domain}"] = ["v=DMARC1; p=reject"]
    assert preflight_run(campaign=campaign).blocking_codes == ["dmarc_missing"]
    assert len(good_dns.asked) == asked  # nothing asked again
    preflight_dns_forget(campaign=campaign)  # what "Re-check" does
    assert preflight_run(campaign=campaign).blocking == []


def test_a_lookup_that_times_out_warns_and_is_asked_again_on_recheck(
    good_dns: FakeResolver, domain: str
) -> None:
    good_dns.down.add(domain)
    campaign = campaign_from(f"news@{domain}")
    report = preflight_run(campaign=campaign)
    unchecked = next(f for f in report.findings if f.code == "spf_unchecked")
    assert unchecked.severity is Severity.WARN and "timed out" in unchecked.message
    assert report.blocking == []
    good_dns.down.clear()
    asked = len(good_dns.asked)
    # Remembered briefly: pages drawn meanwhile do not each wait for the timeout again.
    assert found(preflight_run(campaign=campaign))["spf_unchecked"] is Severity.WARN
    assert len(good_dns.asked) == asked
    preflight_dns_forget(campaign=campaign)  # Re-check asks at once
    assert found(preflight_run(campaign=campaign))["spf_ok"] is Severity.OK


def test_with_dns_checks_off_nothing_is_looked_up_and_it_says_so(
    good_dns: FakeResolver, domain: str, settings: Settings
) -> None:
    settings.OPSDASH_PREFLIGHT_DNS = False
    report = preflight_run(campaign=campaign_from(f"news@{domain}"))
    off = next(f for f in report.findings if f.code == "dns_off")
    assert off.severity is Severity.WARN and "DNS checks are off" in off.message
    assert good_dns.asked == [] and report.blocking == []


def test_a_dns_server_that_never_answers_is_could_not_check(settings: Settings) -> None:
    """The real resolver against a UDP socket that swallows every query: a timeout, reported."""
    settings.OPSDASH_PREFLIGHT_DNS_TIMEOUT_SECONDS = 0.5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = DnspythonResolver(nameservers=["127.0.0.1"], port=silent.getsockname()[1])
        with pytest.raises(DnsUnavailable, match="timed out"):
            resolver.resolve("example.test", "TXT")


class TinyDns:
    """A one-zone DNS server on a local UDP port: TXT answers from ``records``, NXDOMAIN else."""

    def __init__(self, records: dict[str, list[list[bytes]]]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            name = query.question[0].name.to_text().rstrip(".")
            if name in self.records:
                rrset = response.find_rrset(
                    response.answer, query.question[0].name, IN, TXT, create=True
                )
                for strings in self.records[name]:
                    rrset.add(dns.rdtypes.ANY.TXT.TXT(IN, TXT, strings), ttl=60)
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


def test_the_real_resolver_joins_a_records_strings_and_reads_nxdomain_as_none() -> None:
    server = TinyDns({"example.test": [[b"v=spf1 ip4:192.0.2.1 ", b"-all"], [b"other"]]})
    try:
        resolver = DnspythonResolver(nameservers=["127.0.0.1"], port=server.port)
        assert sorted(resolver.resolve("example.test", "TXT")) == [
            "other",
            "v=spf1 ip4:192.0.2.1 -all",
        ]
        assert resolver.resolve("_dmarc.example.test", "TXT") == []
    finally:
        server.sock.close()
