"""The sender-authentication checks: SPF, DKIM, DMARC and DMARC alignment of the From domain.

Gmail and Yahoo require of bulk senders an SPF record and a DKIM signature for the sending
domains, a DMARC record for the From domain, and the From domain aligned with SPF or DKIM
(DMARC passes): a failure of any of these BLOCKs. The rest WARNs. A lookup that cannot be
answered is a WARN "could not check", never a block or a crash.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from campaigns.services.channels import ChannelConfig
from campaigns.services.dkim import DkimSigner, dkim_dns_record, dkim_signer
from campaigns.services.preflight.dns import DnsUnavailable, TxtResolver, org_domain, txt_lookup
from campaigns.services.preflight.report import Finding, Severity

BLOCK, WARN, OK = Severity.BLOCK, Severity.WARN, Severity.OK


@dataclass(frozen=True)
class Sender:
    """Where a campaign's messages claim to come from, and who vouches for them."""

    from_domain: str
    channel: ChannelConfig
    # The envelope sender's domain SPF is checked for: the bounce domain (VERP) on the SMTP
    # channel when one is set, else the From domain.
    envelope_domain: str
    dkim_domain: str  # "" when this system does not sign (an ESP signs, or DKIM is off)
    dkim_selector: str


def sender_of(*, from_domain: str, channel: ChannelConfig) -> Sender:
    smtp = channel.is_smtp
    bounce = str(settings.OPSDASH_BOUNCE_DOMAIN or "").lower().strip(".")
    return Sender(
        from_domain=from_domain,
        channel=channel,
        envelope_domain=bounce if smtp and bounce else from_domain,
        dkim_domain=str(settings.OPSDASH_DKIM_DOMAIN or "").lower().strip(".") if smtp else "",
        dkim_selector=str(settings.OPSDASH_DKIM_SELECTOR or "").lower() if smtp else "",
    )


def dns_names(sender: Sender) -> list[str]:
    """Every name the checks look up for ``sender``: what a re-check forgets."""
    names = [sender.envelope_domain, f"_dmarc.{sender.from_domain}"]
    names.append(f"_dmarc.{org_domain(sender.from_domain)}")
    if sender.dkim_domain and sender.dkim_selector:
        names.append(f"{sender.dkim_selector}._domainkey.{sender.dkim_domain}")
    return names


def authentication_findings(sender: Sender, resolver: TxtResolver) -> list[Finding]:
    if not settings.OPSDASH_PREFLIGHT_DNS:
        return [
            Finding(
                "dns_off",
                WARN,
                "Sender authentication",
                f"Not checked: DNS checks are off (OPSDASH_PREFLIGHT_DNS). SPF, DKIM, DMARC and "
                f"alignment of {sender.from_domain} are not verified before sending.",
            )
        ]
    return [
        spf_check(sender.envelope_domain, resolver),
        dkim_check(sender, resolver),
        dmarc_check(sender.from_domain, resolver),
        alignment_check(sender),
    ]


def _lookup(resolver: TxtResolver, name: str, *, code: str, what: str) -> list[str] | Finding:
    """The records at ``name``, or the WARN "could not check ``what``" finding ``code``."""
    try:
        return txt_lookup(resolver, name)
    except DnsUnavailable as exc:
        return Finding(code, WARN, what, f"Could not check the {what} at {name}: {exc}.")


# --- SPF --------------------------------------------------------------------------------------


def spf_check(domain: str, resolver: TxtResolver) -> Finding:
    title = "SPF record"
    found = _lookup(resolver, domain, code="spf_unchecked", what=title)
    if isinstance(found, Finding):
        return found
    records = [r for r in found if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    if not records:
        return Finding(
            "spf_missing",
            BLOCK,
            title,
            f"{domain} publishes no SPF record. Publish one TXT record at {domain} naming the "
            "servers that send its mail, e.g. “v=spf1 include:<your relay or ESP> -all”.",
        )
    if len(records) > 1:
        return Finding(
            "spf_multiple",
            BLOCK,
            title,
            f"{domain} publishes {len(records)} SPF records; receivers treat that as an error "
            "and SPF fails. Merge them into one TXT record starting “v=spf1”.",
        )
    record = records[0]
    if _spf_passes_all(record):
        return Finding(
            "spf_pass_all",
            WARN,
            title,
            f"The SPF record of {domain} ends in “+all”, so it lets any server send as "
            f"{domain}. End it with “-all” or “~all”. Record: {record}",
        )
    return Finding("spf_ok", OK, title, f"{domain} publishes one SPF record: {record}")


def _spf_passes_all(record: str) -> bool:
    # A bare "all" has the default qualifier, which is "+".
    return any(term in ("+all", "all") for term in record.lower().split()[1:])


# --- DKIM -------------------------------------------------------------------------------------


def dkim_check(sender: Sender, resolver: TxtResolver) -> Finding:
    title = "DKIM key"
    if not sender.channel.is_smtp:
        return Finding(
            "dkim_by_esp",
            WARN,
            title,
            f"Messages on the channel “{sender.channel.name}” are signed by the ESP "
            f"({sender.channel.backend}), not here. Set up its domain authentication for "
            f"{sender.from_domain} so it signs as your domain; this page cannot verify it.",
        )
    try:
        signer = dkim_signer()
    except ImproperlyConfigured as exc:
        return Finding("dkim_misconfigured", BLOCK, title, f"DKIM signing cannot run: {exc}")
    if not sender.dkim_domain or not sender.dkim_selector:
        return Finding(
            "dkim_not_configured",
            BLOCK,
            title,
            "Messages on the SMTP channel are not DKIM-signed: set OPSDASH_DKIM_DOMAIN, "
            "OPSDASH_DKIM_SELECTOR and OPSDASH_DKIM_PRIVATE_KEY, and publish the key's TXT "
            "record (shown here once they are set). If your relay signs instead, an approver "
            "can override this check.",
        )
    return _dkim_record_check(sender, signer, resolver)


def _dkim_record_check(sender: Sender, signer: DkimSigner | None, resolver: TxtResolver) -> Finding:
    title = "DKIM key"
    name = f"{sender.dkim_selector}._domainkey.{sender.dkim_domain}"
    publish = f" Publish the TXT record {name}: “{dkim_dns_record(signer)[1]}”." if signer else ""
    found = _lookup(resolver, name, code="dkim_unchecked", what=title)
    if isinstance(found, Finding):
        return found
    keys = [_tag(record, "p") for record in found if _tag(record, "p") is not None]
    if not keys:
        return Finding(
            "dkim_missing", BLOCK, title, f"No DKIM key is published at {name}.{publish}"
        )
    if not any(keys):
        return Finding(
            "dkim_revoked", BLOCK, title, f"The DKIM key at {name} is empty (revoked).{publish}"
        )
    if signer is not None and not any(_same_key(key or "", signer) for key in keys):
        return Finding(
            "dkim_key_mismatch",
            BLOCK,
            title,
            f"The key published at {name} is not the public half of OPSDASH_DKIM_PRIVATE_KEY, "
            f"so every signature fails.{publish}",
        )
    matched = " and matches the signing key" if signer else ""
    return Finding("dkim_ok", OK, title, f"A DKIM key is published at {name}{matched}.")


def _tag(record: str, tag: str) -> str | None:
    """The value of ``tag`` in a tag=value; list (DKIM, DMARC), or None when absent."""
    for part in record.split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip().lower() == tag:
            return "".join(value.split())
    return None


def _same_key(published: str, signer: DkimSigner) -> bool:
    try:
        key = serialization.load_der_public_key(base64.b64decode(published, validate=True))
    except (ValueError, binascii.Error, TypeError):
        return False
    ours = signer.key.public_key()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_bytes(der, spki) == ours.public_bytes(der, spki)


# --- DMARC ------------------------------------------------------------------------------------


def dmarc_check(from_domain: str, resolver: TxtResolver) -> Finding:
    """The policy at _dmarc.<From domain>, else at its organisational domain (RFC 7489 6.6.3)."""
    title = "DMARC record"
    org = org_domain(from_domain)
    records: list[str] = []
    for domain in dict.fromkeys([from_domain, org]):
        name = f"_dmarc.{domain}"
        found = _lookup(resolver, name, code="dmarc_unchecked", what=title)
        if isinstance(found, Finding):
            return found
        records = [r for r in found if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if records:
            return _dmarc_policy(name, records)
    return Finding(
        "dmarc_missing",
        BLOCK,
        title,
        f"{from_domain} has no DMARC record. Publish a TXT record at _dmarc.{org}, at least "
        f"“v=DMARC1; p=none; rua=mailto:dmarc-reports@{org}”.",
    )


def _dmarc_policy(name: str, records: list[str]) -> Finding:
    title = "DMARC record"
    if len(records) > 1:
        return Finding(
            "dmarc_multiple",
            BLOCK,
            title,
            f"{name} holds {len(records)} DMARC records, so receivers apply none. Keep one.",
        )
    policy = (_tag(records[0], "p") or "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Finding(
            "dmarc_invalid",
            BLOCK,
            title,
            f"The DMARC record at {name} has no valid policy (p=none, quarantine or reject): "
            f"“{records[0]}”.",
        )
    if policy == "none":
        return Finding(
            "dmarc_policy_none",
            WARN,
            title,
            f"The DMARC record at {name} has p=none: it meets the Gmail and Yahoo minimum but "
            "protects nothing. Move to p=quarantine or p=reject once its reports are clean.",
        )
    return Finding("dmarc_ok", OK, title, f"{name} publishes p={policy}.")


# --- Alignment --------------------------------------------------------------------------------


def alignment_check(sender: Sender) -> Finding:
    """Relaxed alignment (RFC 7489 3.1): same organisational domain as the From address."""
    title = "DMARC alignment"
    if not sender.channel.is_smtp:
        return Finding(
            "alignment_by_esp",
            WARN,
            title,
            f"The ESP ({sender.channel.backend}) chooses the DKIM domain and the bounce "
            f"address: align them with {sender.from_domain} in its domain settings (a custom "
            "return path, DKIM for your domain); this page cannot verify it.",
        )
    org = org_domain(sender.from_domain)
    aligned = []
    if sender.dkim_domain and org_domain(sender.dkim_domain) == org:
        aligned.append(f"DKIM (d={sender.dkim_domain})")
    if org_domain(sender.envelope_domain) == org:
        aligned.append(f"SPF (envelope sender @{sender.envelope_domain})")
    if not aligned:
        dkim = f"the DKIM domain {sender.dkim_domain}" if sender.dkim_domain else "no DKIM domain"
        return Finding(
            "alignment_failed",
            BLOCK,
            title,
            f"The From domain {sender.from_domain} matches neither {dkim} nor the envelope "
            f"sender's domain {sender.envelope_domain}, so DMARC fails. Sign with a domain "
            f"under {org} (OPSDASH_DKIM_DOMAIN) or send bounces to one (OPSDASH_BOUNCE_DOMAIN), "
            f"or send from an address at {org_domain(sender.envelope_domain)}.",
        )
    return Finding(
        "alignment_ok", OK, title, f"{sender.from_domain} is aligned with {' and '.join(aligned)}."
    )
