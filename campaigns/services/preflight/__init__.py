"""Pre-flight checks of a campaign before it is scheduled or sent (docs/operations.md,
"Pre-flight checks").

``preflight_run`` returns a report of findings: sender authentication of the From domain (SPF,
DKIM, DMARC, alignment; looked up in DNS when OPSDASH_PREFLIGHT_DNS is on) and the message
itself (one-click unsubscribe headers, size, text part, links). ``preflight_problem`` says why
blocking findings stop a send, unless an approver's override covers them (``gate``).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Campaign
from campaigns.services.channels import channel_config
from campaigns.services.preflight.authentication import (
    Sender,
    authentication_findings,
    dns_names,
    sender_of,
)
from campaigns.services.preflight.content import content_findings
from campaigns.services.preflight.dns import (
    DnspythonResolver,
    DnsUnavailable,
    TxtResolver,
    domain_of,
    txt_forget,
)
from campaigns.services.preflight.gate import (
    campaign_preflight_override,
    override_in_force,
    preflight_override_clear,
    preflight_problem,
    uncovered_blocking,
)
from campaigns.services.preflight.report import Finding, Group, PreflightReport, Severity

__all__ = [
    "DnsUnavailable",
    "Finding",
    "Group",
    "PreflightReport",
    "Severity",
    "TxtResolver",
    "campaign_preflight_override",
    "override_in_force",
    "preflight_dns_forget",
    "preflight_override_clear",
    "preflight_problem",
    "preflight_resolver",
    "preflight_run",
    "uncovered_blocking",
]

# The resolver the checks use; tests put a resolver of their own here (DNS is outside the
# system), so nothing in them touches the network.
RESOLVER: TxtResolver = DnspythonResolver()


def preflight_resolver() -> TxtResolver:
    return RESOLVER


def preflight_run(*, campaign: Campaign, resolver: TxtResolver | None = None) -> PreflightReport:
    """Every check for ``campaign`` as stored (or as given, unsaved), never raising for DNS."""
    try:
        sender = _sender(campaign)
    except ImproperlyConfigured as exc:
        channel = Finding("channel_unknown", Severity.BLOCK, "Sending channel", str(exc))
        return PreflightReport(findings=(channel, *content_findings(campaign)))
    findings = [
        *authentication_findings(sender, resolver or preflight_resolver()),
        *content_findings(campaign),
    ]
    return PreflightReport(findings=tuple(findings))


def preflight_dns_forget(*, campaign: Campaign) -> None:
    """Forgets the cached DNS answers the campaign's checks use: a re-check asks DNS afresh."""
    try:
        txt_forget(dns_names(_sender(campaign)))
    except ImproperlyConfigured:
        return  # an unknown channel: nothing was looked up


def _sender(campaign: Campaign) -> Sender:
    channel = channel_config(campaign.channel)
    return sender_of(from_domain=domain_of(campaign.from_email), channel=channel)
