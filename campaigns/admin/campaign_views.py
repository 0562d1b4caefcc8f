"""The campaign page's own endpoints: the live preview and the state of a test message's task.

Both answer the page's script in JSON; they parse the request and leave the work to a service
(the preview) or a selector (the task state). The preview renders whatever is posted, so it
needs the permission to write it (change, or add for a campaign not saved yet); reading the
state of a task needs only the view permission.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from campaigns.selectors import campaigns as campaign_selectors
from campaigns.services.previews import PREVIEW_FIELDS, PreviewProblem, campaign_preview


class CampaignToolViews:
    """The URLs and views behind the preview and test-message panels of a campaign."""

    def __init__(self, model_admin: ModelAdmin[Any]) -> None:
        self.model_admin = model_admin

    def urls(self) -> list[URLPattern]:
        wrap = self.model_admin.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="campaigns_campaign_preview"),
            path(
                "task-state/<str:task_id>/",
                wrap(self.task_state_view),
                name="campaigns_campaign_task_state",
            ),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """Renders the posted (possibly unsaved) content for one recipient, as JSON."""
        return require_POST(self._preview)(request)

    def task_state_view(self, request: HttpRequest, task_id: str) -> HttpResponse:
        return require_GET(self._task_state)(request, task_id)

    def _require_view(self, request: HttpRequest) -> None:
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied

    def _require_compose(self, request: HttpRequest, *, campaign_id: int | None) -> None:
        # A preview renders content the poster wrote: only those who may write it may render it.
        if campaign_id is None:
            allowed = self.model_admin.has_add_permission(request)
        else:
            allowed = self.model_admin.has_change_permission(request)
        if not allowed:
            raise PermissionDenied

    def _preview(self, request: HttpRequest) -> HttpResponse:
        posted = request.POST
        posted_id = posted.get("campaign_id", "")
        # Only a plain number names a campaign; anything else previews the form alone.
        campaign_id = int(posted_id) if posted_id.isdigit() else None
        self._require_compose(request, campaign_id=campaign_id)
        try:
            preview = campaign_preview(
                campaign_id=campaign_id,
                data={name: posted[name] for name in PREVIEW_FIELDS if name in posted},
                recipient_email=posted.get("recipient", ""),
            )
        except PreviewProblem as exc:
            return JsonResponse({"error": str(exc)})
        return JsonResponse(asdict(preview))

    def _task_state(self, request: HttpRequest, task_id: str) -> HttpResponse:
        self._require_view(request)
        state = campaign_selectors.task_state(task_id=task_id)
        if state is None:
            return JsonResponse({"error": "Unknown task."}, status=404)
        return JsonResponse(state)
