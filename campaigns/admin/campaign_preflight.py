"""The campaign page's Pre-flight panel: the findings with their badges, a Re-check that asks
DNS afresh, and the approver's override of blocking findings (with a reason, audited).

The findings come from services.preflight; the override is its service. These views only read
the request and say the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from campaigns.models import Campaign
from campaigns.services.controls import FINAL
from campaigns.services.preflight import (
    Finding,
    Group,
    PreflightReport,
    campaign_preflight_override,
    override_in_force,
    preflight_dns_forget,
    preflight_run,
    uncovered_blocking,
)

APPROVE = "campaigns.approve_campaign"


@dataclass(frozen=True)
class PreflightPanel:
    """What the panel draws for one campaign and one staff member."""

    report: PreflightReport
    groups: list[tuple[str, list[Finding]]]
    uncovered: list[Finding]  # blocking and not covered by an override in force
    override_codes: list[str]  # of the override in force, else empty
    may_override: bool


def preflight_panel(*, campaign: Campaign, user: Any) -> PreflightPanel | None:
    """The panel of a campaign that may still be sent; None for a finished one (a record)."""
    if campaign.pk is None or campaign.status in FINAL:
        return None
    report = preflight_run(campaign=campaign)
    uncovered = uncovered_blocking(campaign, report)
    return PreflightPanel(
        report=report,
        groups=[(group.value, report.of_group(group)) for group in Group],
        uncovered=uncovered,
        override_codes=list(campaign.preflight_override_codes)
        if override_in_force(campaign)
        else [],
        may_override=bool(uncovered) and user.has_perm(APPROVE),
    )


def preflight_blocking(*, campaign: Campaign) -> list[Finding]:
    """The blocking findings no override covers: the confirmation page says them up front."""
    return uncovered_blocking(campaign, preflight_run(campaign=campaign))


class PreflightViews:
    """POST-only endpoints of the panel; both go back to the panel on the campaign page."""

    def __init__(self, model_admin: ModelAdmin[Any]) -> None:
        self.model_admin = model_admin

    def urls(self) -> list[URLPattern]:
        wrap = self.model_admin.admin_site.admin_view
        return [
            path(
                "<int:object_id>/preflight/recheck/",
                wrap(require_POST(self.recheck_view)),
                name="campaigns_campaign_preflight_recheck",
            ),
            path(
                "<int:object_id>/preflight/override/",
                wrap(require_POST(self.override_view)),
                name="campaigns_campaign_preflight_override",
            ),
        ]

    def recheck_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Forgets the cached DNS answers, so the page asks again (a record just published)."""
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        preflight_dns_forget(campaign=campaign)
        messages.info(request, "Pre-flight checks run again, with fresh DNS answers.")
        return HttpResponseRedirect(_back(campaign))

    def override_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not request.user.has_perm(APPROVE):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        report = preflight_run(campaign=campaign)
        try:
            campaign_preflight_override(
                campaign=campaign,
                by=request.user,
                reason=request.POST.get("reason", ""),
                report=report,
            )
        except ValidationError as exc:
            for text in exc.messages:
                messages.error(request, text)
        else:
            codes = ", ".join(report.blocking_codes)
            messages.warning(
                request,
                f"“{campaign.name}” may be sent despite the failed checks ({codes}). An edit "
                "of the campaign, or a new failed check, voids this override.",
            )
        return HttpResponseRedirect(_back(campaign))


def _back(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk]) + "#preflight"
