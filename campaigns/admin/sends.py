"""Sends and their deliveries: records to read, and the controls of a running send."""

from __future__ import annotations

import time
from typing import Any, Protocol

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from campaigns.admin.base import (
    POST_ACTION,
    STATUS_COLOURS,
    ChangelistDefer,
    EstimatedCountPaginator,
    ExactEmailSearch,
    ReadOnlyAdminMixin,
    id_link,
    run_service,
)
from campaigns.admin.campaigns import CampaignPermissions
from campaigns.models import Delivery, Layout, Send
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.selectors import sends as send_selectors
from campaigns.selectors.cache import cache_probe
from campaigns.selectors.deliveries import delivery_timeline
from campaigns.selectors.feedback import send_feedback
from campaigns.selectors.guardrails import guardrail_acceptance_of, guardrail_pause_of
from campaigns.selectors.health import clock, send_wait
from campaigns.selectors.occurrence import occurrence_words, send_label
from campaigns.selectors.tasks import task_lines
from campaigns.services.audit import By
from campaigns.services.controls import Control, Offer
from campaigns.services.delivery import send_cancel, send_pause, send_resume
from campaigns.services.delivery.control import guardrail_resume_refusal
from campaigns.services.transitions import send_page_actions

# A running send held up by Redis or the database reads "waiting", in the warning colour.
SEND_STATUS_COLOURS = {**STATUS_COLOURS, "waiting": "warning"}


class SendService(Protocol):
    def __call__(self, *, send_id: int, by: By) -> Send: ...


class GuardrailResumeForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=500,
        help_text="Why the send may go on (the list was cleaned, the provider stopped "
        "deferring...). It goes into the audit trail.",
    )


class SendControlMixin(CampaignPermissions):
    """Pause, resume and cancel buttons on a send; each calls one service of the state machine."""

    def _back(self, object_id: Any) -> str:
        return reverse("admin:campaigns_send_change", args=[object_id])

    def _control(
        self, request: HttpRequest, object_id: Any, service: SendService, success: str
    ) -> HttpResponse:
        return run_service(
            request,
            lambda: service(send_id=int(object_id), by=request.user),
            success=success,
            redirect_to=self._back(object_id),
        )

    @action(description="Pause", permissions=["send"], icon="pause", attrs=POST_ACTION)
    def pause(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        success = "Paused: no new message leaves until you resume."
        return self._control(request, object_id, send_pause, success)

    @action(description="Resume", permissions=["send"], icon="play_arrow", attrs=POST_ACTION)
    def resume(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        success = "Resumed: the remaining recipients are being sent."
        return self._control(request, object_id, send_resume, success)

    @action(
        description="Resume after a guardrail", permissions=["send", "approve"], icon="play_arrow"
    )
    def resume_guardrail(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """A send a guardrail paused: a page with what it measured and a form asking why it
        may go on; the resume service checks the approver and audits the reason."""
        send = Send.objects.select_related("campaign").filter(pk=object_id).first()
        if send is None:
            raise Http404("No such send.")
        pause = guardrail_pause_of(send)
        if pause is None:  # resumed or cancelled meanwhile: the send's page says what it is
            return HttpResponseRedirect(self._back(object_id))
        form = GuardrailResumeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                send_resume(send_id=send.pk, by=request.user, reason=form.cleaned_data["reason"])
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, "Resumed: the remaining recipients are being sent.")
                return HttpResponseRedirect(self._back(object_id))
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": Send._meta,
            "original": send,
            "title": f"Resume “{send.campaign.name}” after a guardrail",
            "form": form,
            "guardrail_pause": pause,
            "refusal": guardrail_resume_refusal(by=request.user, reason="-"),
            "back": self._back(object_id),
        }
        return TemplateResponse(request, "admin/campaigns/send/resume_guardrail.html", context)

    @action(description="Cancel", permissions=["send"], icon="cancel")
    def cancel(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """A GET shows what cancelling does, with the counts; the POST of its form cancels."""
        if request.method != "POST":
            return self._confirm_cancel(request, object_id)
        success = "Cancelled: the recipients not yet sent are marked skipped."
        return self._control(request, object_id, send_cancel, success)

    def _confirm_cancel(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """The campaign page's confirmation, for this send: the same template and plan."""
        send = Send.objects.select_related("campaign").filter(pk=object_id).first()
        if send is None:
            raise Http404("No such send.")
        refusal = send_selectors.send_cancel_refusal(send)
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": Send._meta,
            "original": send,
            "campaign": send.campaign,
            "control": Control.CANCEL,
            "cancel": None if refusal else campaign_selectors.send_cancel_plan(send=send),
            "offer": Offer(control=Control.CANCEL, reason=refusal),
            "title": f"Cancel the send of “{send.campaign.name}”",
            "back": self._back(object_id),
            "back_label": "Back to the send",
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm.html", context)


@admin.register(Send)
class SendAdmin(SendControlMixin, ReadOnlyAdminMixin, ModelAdmin):
    # A send's fields are a record, not a form: no Save buttons. Its controls are actions.
    list_display = (
        "id",
        "campaign",
        "occurrence",
        "status_badge",
        "progress",
        "after_sending",
        "started_at",
        "finished_at",
        "stalled_reason",
    )
    list_filter = ("status", "trigger")
    list_select_related = ("campaign",)
    paginator = EstimatedCountPaginator
    list_per_page = 50
    search_fields = ("campaign__name", "occurrence_key")
    readonly_fields = (
        "campaign",
        "occurrence",
        "status_now",
        "trigger",
        "started_by",
        "live_progress",
        "feedback",
        "created_at",
        "started_at",
        "finished_at",
        "last_progress_at",
        "stalled_reason",
        "audit_links",
        "frozen_content",
    )
    # The engine's wait bookkeeping reads as the status ("Waiting for Redis since …"); the
    # content is drawn by frozen_content, not as raw JSON.
    # The status itself is drawn once, as a badge (status_now). The progress counters are not
    # shown: the page counts the rows themselves (live_progress), and refreshes while the send
    # runs. The counters of what came back (delivered, bounced, ...) are drawn by feedback.
    exclude = (
        "status",
        "occurrence_key",  # drawn in words by occurrence
        "triggered_by",  # drawn by started_by, which names the schedule too
        "waiting_for",
        "waiting_since",
        "retry_due_at",
        "content",
        "total",
        "sent_count",
        "failed_count",
        "skipped_count",
        "delivered_count",
        "soft_bounced_count",
        "bounced_count",
        "complained_count",
        "unsubscribed_count",
        "opened_count",
        "clicked_count",
        # Drawn above the page by send_guardrail.html, with the figures and the threshold.
        "paused_reason",
        "guardrail",
        "guardrail_at",
        "guardrail_state",
    )
    actions_detail = ("pause", "resume", "resume_guardrail", "cancel")
    show_full_result_count = False
    change_form_outer_before_template = "admin/campaigns/send_services.html"
    change_form_outer_after_template = "admin/campaigns/send_audit.html"

    def get_urls(self) -> list[URLPattern]:
        live = path(
            "<path:object_id>/live/",
            self.admin_site.admin_view(self.live_view),
            name="campaigns_send_live",
        )
        return [live, *super().get_urls()]

    def live_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """What the send's page redraws every few seconds while the send is active (JSON):
        the status badge, the progress counted from the rows, the newest deliveries."""
        send = self.get_object(request, object_id) if object_id.isdigit() else None
        if send is None:
            raise Http404("No such send.")
        if not self.has_view_permission(request, send):
            raise PermissionDenied
        started = time.monotonic()
        progress = send_selectors.send_progress(send_id=send.pk)
        deliveries = list(
            send_selectors.send_deliveries(
                send_id=send.pk,
                status=request.GET.get("outcome", ""),
                email=request.GET.get("email", ""),
            )
        )
        counted_in = time.monotonic() - started
        return JsonResponse(
            {
                "status": send.status,
                "poll": send_selectors.send_polls(send),
                "next_ms": send_selectors.poll_interval_ms(counted_in),
                "progress": progress.as_dict(),
                "feedback": send_feedback(send).as_dict(),
                "feedback_html": self.feedback(send),
                "status_html": self.status_now(send),
                "progress_html": self._progress_html(send, progress, live=True),
                "deliveries_html": render_to_string(
                    "admin/campaigns/send_deliveries_rows.html", {"deliveries": deliveries}
                ),
            }
        )

    def get_actions_detail(self, request: HttpRequest, object_id: int | str) -> list[Any]:
        """Only the controls the send's status allows (the Send state machine decides)."""
        row = Send.objects.filter(pk=object_id).values_list("status", "guardrail").first()
        status, guardrail = row or ("", "")
        offered = send_page_actions(str(status), guardrail=str(guardrail))
        prefix = "campaigns_send_"  # Unfold names each action <app>_<model>_<method>
        actions = super().get_actions_detail(request, object_id)
        return [a for a in actions if a.action_name.removeprefix(prefix) in offered]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Adds the send's deliveries (by outcome or address), its task results, and whether
        Redis answers (the page works without it, and says so)."""
        extra_context = extra_context or {}
        cache_down_since = cache_probe()
        extra_context["cache_down_since"] = cache_down_since and clock(cache_down_since)
        if object_id.isdigit():
            send = Send.objects.select_related("campaign").filter(pk=object_id).first()
            extra_context["send_live_poll"] = send is not None and send_selectors.send_polls(send)
            extra_context.update(self._guardrail_context(request, send))
            outcome = request.GET.get("outcome", "")
            email = request.GET.get("email", "")
            results = send_selectors.send_task_results(send_id=int(object_id))
            extra_context.update(
                {
                    "deliveries": send_selectors.send_deliveries(
                        send_id=int(object_id), status=outcome, email=email
                    ),
                    "delivery_outcome": outcome,
                    "delivery_email": email,
                    "delivery_outcomes": Delivery.Status.choices,
                    "task_results": task_lines(results),
                    "page_rows": send_selectors.SEND_PAGE_ROWS,
                }
            )
        response: HttpResponse = super().change_view(request, object_id, form_url, extra_context)
        return response

    def _guardrail_context(self, request: HttpRequest, send: Send | None) -> dict[str, Any]:
        """The guardrail's pause above the page (what it measured, who may resume), or the
        last approved resume of a send that runs on after one."""
        if send is None:
            return {}
        return {
            "guardrail_pause": guardrail_pause_of(send),
            "guardrail_acceptance": guardrail_acceptance_of(send),
            "guardrail_may_resume": self.has_approve_permission(request)
            and self.has_send_permission(request),
        }

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A stalled reason is news only when there is one; an empty one reads as a problem.
        fields = super().get_fields(request, obj)
        if obj is not None and not obj.stalled_reason:
            fields = [name for name in fields if name != "stalled_reason"]
        return fields

    @display(description="Occurrence", ordering="occurrence_key")
    def occurrence(self, obj: Send) -> str:
        """Which of the campaign's sends this is, in words: "One-off send", "Scheduled for
        25 Nov 2026, 09:00 CET"."""
        return occurrence_words(obj.occurrence_key)

    @display(description="Started by")
    def started_by(self, obj: Send) -> str:
        """The person who pressed Send now (full name, else username), or the schedule."""
        user = obj.triggered_by
        if user is None:
            return "the schedule" if obj.trigger == Send.Trigger.SCHEDULE else "—"
        return user.get_full_name() or user.get_username()

    @display(description="Status", label=SEND_STATUS_COLOURS)
    def status_badge(self, obj: Send) -> str | tuple[str, str]:
        # "Waiting for Redis since 16:32:05 UTC" rather than "running" while a service is out.
        if wait := send_wait(obj):
            return ("waiting", wait.describe())
        return obj.status

    @display(description="Status")
    def status_now(self, obj: Send) -> str:
        # The change page draws read-only fields as text: the same badge, drawn here, in a
        # span the page's poller replaces.
        key, text = ("waiting", wait.describe()) if (wait := send_wait(obj)) else (obj.status,) * 2
        badge = render_to_string(
            "unfold/helpers/label.html", {"text": text, "type": SEND_STATUS_COLOURS.get(key, "")}
        )
        return format_html('<span data-send-live="status">{}</span>', badge)

    @display(description="Progress")
    def progress(self, obj: Send) -> str:
        # In the list of sends: from the counters (no query per row), refreshed while running.
        return self._progress_html(obj, send_selectors.send_progress_of_counters(obj), live=False)

    @display(description="Progress")
    def live_progress(self, obj: Send) -> str:
        # On the send's page: counted from the rows, redrawn by send_live.js while it runs.
        return self._progress_html(obj, send_selectors.send_progress(send_id=obj.pk), live=True)

    def _progress_html(self, send: Send, progress: send_selectors.SendProgress, live: bool) -> str:
        return render_to_string(
            "admin/campaigns/send_progress.html",
            {
                "send": send,
                "progress": progress,
                "running": send.status == Send.Status.RUNNING,
                "live": live,
                "wait": send_wait(send),
            },
        )

    @display(description="After sending")
    def after_sending(self, obj: Send) -> str:
        # In the list of sends: delivered, and only the rates over their line (no query).
        return render_to_string(
            "admin/campaigns/send_feedback_short.html", {"feedback": send_feedback(obj)}
        )

    @display(description="After sending")
    def feedback(self, obj: Send) -> str:
        """Delivered, bounced, complained, ... and their rates, from the send's counters."""
        return render_to_string(
            "admin/campaigns/send_feedback.html", {"feedback": send_feedback(obj)}
        )

    @display(description="Content sent")
    def frozen_content(self, obj: Send) -> str:
        """What this send's recipients get, frozen at launch: later campaign edits never show."""
        if not obj.content:
            return "Not recorded (this send started before sends kept their content)."
        # The layout as it is called now; its version says which edit the send went out with.
        names = Layout.objects.filter(pk=obj.content.get("layout_id") or 0)
        return render_to_string(
            "admin/campaigns/send_content.html",
            {"content": obj.content, "layout_name": names.values_list("name", flat=True).first()},
        )

    @display(description="Audit")
    def audit_links(self, obj: Send) -> str:
        deliveries = reverse("admin:campaigns_delivery_changelist") + f"?send__id__exact={obj.pk}"
        results = reverse("admin:django_celery_results_taskresult_changelist") + f"?send={obj.pk}"
        audit = reverse("admin:campaigns_auditentry_changelist") + f"?send__id__exact={obj.pk}"
        return format_html(
            '<a href="{}">Deliveries</a> · <a href="{}">Task results</a> · '
            '<a href="{}">Audit trail</a>',
            deliveries,
            results,
            audit,
        )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, ExactEmailSearch, ChangelistDefer, ModelAdmin):
    # The task id is developer detail: on the delivery's own page only.
    list_display = ("id", "recipient", "send_link", "status_badge", "attempts", "sent_at")
    list_filter = ("status",)
    list_select_related = ("recipient",)
    email_lookup = "recipient__email"
    search_fields = ("recipient__email",)
    search_help_text = (
        "The exact email address of a recipient (ada@example.com); part of one finds nothing."
    )
    list_before_template = "admin/campaigns/search_help.html"
    changelist_defer = ("last_error", "smtp_response", "recipient__attributes")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    # The default -id ordering walks the primary key backwards; no sort on unindexed columns.
    sortable_by = ("id", "sent_at")
    readonly_fields = (
        "send",
        "recipient",
        "status",
        "timeline",
        "skip_reason",
        "attempts",
        "last_error",
        "smtp_response",
        "message_id",
        "esp_message_id",
        "task",
        "claimed_at",
        "sent_at",
        "updated_at",
    )
    # The event times are drawn by the timeline, each with what it was.
    exclude = (
        "task_id",
        "delivered_at",
        "soft_bounced_at",
        "bounced_at",
        "complained_at",
        "unsubscribed_at",
        "opened_at",
        "clicked_at",
    )

    @display(description="What happened")
    def timeline(self, obj: Delivery) -> str:
        """Queued, each attempt and its answer, sent, then what providers reported."""
        return render_to_string(
            "admin/campaigns/delivery_timeline.html",
            {"entries": delivery_timeline(obj), "esp_message_id": obj.esp_message_id},
        )

    @display(description="Status", label=STATUS_COLOURS)
    def status_badge(self, obj: Delivery) -> str:
        return obj.status

    def get_queryset(self, request: HttpRequest) -> Any:
        # The send's name comes with the row: its __str__ would fetch the campaign for every row.
        queryset = super().get_queryset(request)
        return queryset.annotate(
            send_campaign_name=F("send__campaign__name"),
            send_occurrence=F("send__occurrence_key"),
        )

    @display(description="Send")
    def send_link(self, obj: Delivery) -> str:
        name = getattr(obj, "send_campaign_name", None)
        label = send_label(name, getattr(obj, "send_occurrence", None)) if name else ""
        return id_link(Send, obj.send_id, "Send", label)

    @display(description="Task")
    def task(self, obj: Delivery) -> str:
        if not obj.task_id:
            return "—"
        url = reverse("admin:django_celery_results_taskresult_changelist")
        return format_html('<a href="{}?task_id={}">{}</a>', url, obj.task_id, obj.task_id[:8])
