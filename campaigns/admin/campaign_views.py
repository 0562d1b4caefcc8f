"""The campaign page's own endpoints: the live preview, the body's format switch, the state of
a test message's task, the test-message form (to me or a seed list, as a sample or a chosen
recipient) and the way from "Send now" to the send it started.

The preview and the task state answer the page's script in JSON; they parse the request and
leave the work to a service (the preview) or a selector (the task state). The preview renders
whatever is posted, so rendering posted content needs the permission to write it (change, or add
for a campaign not saved yet); a reader with only the view permission (an approver, an auditor)
gets a saved campaign rendered as stored, whatever is posted, so they approve what they saw.
Reading the state of a task needs only the view permission.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from campaigns.models import Campaign, Recipient, SeedList, Send
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.services.authoring.switch import FormatProblem, body_format_switch
from campaigns.services.previews import PREVIEW_FIELDS, PreviewProblem, campaign_preview
from campaigns.services.seeds import campaign_send_tests, personalisation_recipient


class CampaignToolViews:
    """The URLs and views behind the preview and test-message panels of a campaign."""

    def __init__(self, model_admin: ModelAdmin[Any]) -> None:
        self.model_admin = model_admin

    def urls(self) -> list[URLPattern]:
        wrap = self.model_admin.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="campaigns_campaign_preview"),
            path(
                "convert-body/",
                wrap(self.convert_body_view),
                name="campaigns_campaign_convert_body",
            ),
            path(
                "task-state/<str:task_id>/",
                wrap(self.task_state_view),
                name="campaigns_campaign_task_state",
            ),
            path(
                "<int:object_id>/send-test/",
                wrap(self.send_test_view),
                name="campaigns_campaign_send_test",
            ),
            path(
                "<int:object_id>/sends/<path:key>/",
                wrap(self.send_for_view),
                name="campaigns_campaign_send_for",
            ),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """Renders the posted (possibly unsaved) content for one recipient, as JSON."""
        return require_POST(self._preview)(request)

    def convert_body_view(self, request: HttpRequest) -> HttpResponse:
        """The body in another format, for the editor's format switch, as JSON."""
        return require_POST(self._convert_body)(request)

    def task_state_view(self, request: HttpRequest, task_id: str) -> HttpResponse:
        return require_GET(self._task_state)(request, task_id)

    def _require_view(self, request: HttpRequest) -> None:
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied

    def _may_compose(self, request: HttpRequest, *, campaign_id: int | None) -> bool:
        # Posted content is the poster's own writing: only those who may write it may render it.
        if campaign_id is None:
            return self.model_admin.has_add_permission(request)
        return self.model_admin.has_change_permission(request)

    def _preview_data(self, request: HttpRequest, campaign_id: int | None) -> dict[str, str]:
        """The posted fields for a writer; none for a reader of a saved campaign, who sees it
        as stored; PermissionDenied for anyone else."""
        if self._may_compose(request, campaign_id=campaign_id):
            posted = request.POST
            return {name: posted[name] for name in PREVIEW_FIELDS if name in posted}
        if campaign_id is None or not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        get_object_or_404(Campaign, pk=campaign_id)
        return {}

    def _preview(self, request: HttpRequest) -> HttpResponse:
        posted = request.POST
        posted_id = posted.get("campaign_id", "")
        # Only a plain number names a campaign; anything else previews the form alone.
        campaign_id = int(posted_id) if posted_id.isdigit() else None
        data = self._preview_data(request, campaign_id)
        try:
            preview = campaign_preview(
                campaign_id=campaign_id, data=data, recipient_email=posted.get("recipient", "")
            )
        except PreviewProblem as exc:
            return JsonResponse({"error": str(exc)})
        return JsonResponse(asdict(preview))

    def _convert_body(self, request: HttpRequest) -> HttpResponse:
        # Only those who compose campaigns have a body to convert.
        admin = self.model_admin
        if not (admin.has_add_permission(request) or admin.has_change_permission(request)):
            raise PermissionDenied
        posted = request.POST
        try:
            switch = body_format_switch(
                body=posted.get("body", ""),
                from_format=posted.get("from_format", ""),
                to_format=posted.get("to_format", ""),
            )
        except FormatProblem as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse(asdict(switch))

    def _task_state(self, request: HttpRequest, task_id: str) -> HttpResponse:
        self._require_view(request)
        state = campaign_selectors.task_state(task_id=task_id)
        if state is None:
            return JsonResponse({"error": "Unknown task."}, status=404)
        return JsonResponse(state)

    def send_test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The test panel's form: to me or a seed list, as a sample or as one recipient."""
        return require_POST(self._send_test)(request, object_id)

    def send_for_view(self, request: HttpRequest, object_id: int, key: str) -> HttpResponse:
        """Where "Follow its send" leads: the send's page once the launch has made it."""
        return require_GET(self._send_for)(request, object_id, key)

    def _send_test(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not request.user.has_perm("campaigns.send_test_campaign"):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        back = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        try:
            to, seeds = self._test_addresses(request)
            recipient = self._test_recipient(request)
            tasks = campaign_send_tests(
                campaign=campaign, by=request.user, to=to, as_recipient=recipient
            )
        except ValidationError as exc:
            for text in exc.messages:
                messages.error(request, text)
            return HttpResponseRedirect(f"{back}#test-send")
        who = f"the seed list “{seeds.name}” ({len(to)})" if seeds else to[0]
        as_whom = f", personalised as {recipient.email}" if recipient else ""
        messages.success(request, f"A test message is on its way to {who}{as_whom}.")
        return HttpResponseRedirect(f"{back}?test_task={','.join(tasks)}#test-send")

    def _test_addresses(self, request: HttpRequest) -> tuple[list[str], SeedList | None]:
        seed_id = request.POST.get("seed_list", "")
        if request.POST.get("to") != "seeds":
            return [getattr(request.user, "email", "")], None
        seeds = SeedList.objects.filter(pk=int(seed_id)).first() if seed_id.isdigit() else None
        if seeds is None:
            raise ValidationError("Choose a seed list to send the test to.")
        return seeds.address_list, seeds

    def _test_recipient(self, request: HttpRequest) -> Recipient | None:
        if request.POST.get("as") != "recipient":
            return None
        email = request.POST.get("recipient", "")
        if not email.strip():
            raise ValidationError("Enter the address of the recipient to personalise the test as.")
        return personalisation_recipient(email=email)

    def _send_for(self, request: HttpRequest, object_id: int, key: str) -> HttpResponse:
        self._require_view(request)
        campaign = get_object_or_404(Campaign, pk=object_id)
        send = Send.objects.filter(campaign=campaign, occurrence_key=key).first()
        if send is not None:
            return HttpResponseRedirect(reverse("admin:campaigns_send_change", args=[send.pk]))
        context = {
            **self.model_admin.admin_site.each_context(request),
            "title": f"“{campaign.name}” is starting",
            "campaign": campaign,
            "back": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/send_starting.html", context)
