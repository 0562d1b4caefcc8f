"""Campaigns, their sends and deliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminSelectWidget

from campaigns.admin.base import (
    POST_ACTION,
    STATUS_COLOURS,
    ChangelistDefer,
    admin_url,
    post_required,
    run_service,
)
from campaigns.admin.campaign_views import CampaignToolViews
from campaigns.models import Campaign
from campaigns.services import campaigns as campaign_services
from campaigns.services.audit import By
from campaigns.services.scheduling import WEEKDAYS, schedule_describe
from campaigns.services.transitions import CampaignControl, campaign_controls_for

RECENT_SENDS = 10
# The detail action behind each status control; the state machine decides which are offered.
CONTROL_ACTIONS: dict[CampaignControl, str] = {
    CampaignControl.SEND_NOW: "send_now",
    CampaignControl.SCHEDULE: "schedule_campaign",
    CampaignControl.UNSCHEDULE: "unschedule_campaign",
}


if TYPE_CHECKING:  # the stubs make ModelForm generic; at runtime it is not subscriptable
    _CampaignModelForm = forms.ModelForm[Campaign]
else:
    _CampaignModelForm = forms.ModelForm


class CampaignService(Protocol):
    """A campaign service staff run from a button: it takes the campaign and who pressed."""

    def __call__(self, *, campaign: Campaign, by: By) -> object: ...


class CampaignForm(_CampaignModelForm):
    class Meta:
        model = Campaign
        fields = (
            *campaign_services.CONTENT_FIELDS,
            "audiences",
            "rate_limit_per_minute",
            *campaign_services.SCHEDULE_FIELDS,
        )
        # Admin help text is rendered as HTML: the model's "<team@example.com>" would vanish.
        help_texts = {
            "from_email": "A bare address, or a display name and address: "
            "Team &lt;team@example.com&gt;.",
        }
        widgets = {
            # A handful of lists: ticking them reads better than a two-pane chooser.
            "audiences": UnfoldAdminCheckboxSelectMultipleWidget,
            "schedule_weekday": UnfoldAdminSelectWidget(
                choices=[("", "—"), *enumerate(WEEKDAYS)],
            ),
        }

    def _post_clean(self) -> None:
        # The stubs omit BaseModelForm._post_clean (model validation), hence [misc].
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            campaign_services.campaign_check(campaign=self.instance)
        except ValidationError as exc:
            self.add_error(None, exc)
        # The page may have been drawn before a send started: say why the edit cannot be saved.
        if self.instance.pk is not None and (
            refusal := campaign_services.campaign_edit_refusal(
                status=self.instance.status, changed=self.changed_data
            )
        ):
            self.add_error(None, refusal)


class CampaignPermissions:
    """The role permissions behind the action buttons (granted through the role groups)."""

    def has_send_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return request.user.has_perm("campaigns.send_campaign")

    def has_approve_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return request.user.has_perm("campaigns.approve_campaign")

    def has_send_test_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return request.user.has_perm("campaigns.send_test_campaign")


@admin.register(Campaign)
class CampaignAdmin(CampaignPermissions, ChangelistDefer, ModelAdmin):
    form = CampaignForm
    list_display = ("name", "status_badge", "schedule", "owner", "updated_at")
    list_filter = ("status", "schedule_kind")
    search_fields = ("name", "subject")
    readonly_fields = (
        "status",
        "schedule",
        "owner",
        "last_edited_by",
        "edited_at",
        "approved_by",
        "approved_at",
        "periodic_task_link",
        "recent_sends",
        "audit_link",
    )
    fieldsets = (
        ("Content", {"classes": ["tab"], "fields": campaign_services.CONTENT_FIELDS}),
        ("Audience", {"classes": ["tab"], "fields": ("audiences", "rate_limit_per_minute")}),
        ("Schedule", {"classes": ["tab"], "fields": campaign_services.SCHEDULE_FIELDS}),
        (
            "Status",
            {
                "classes": ["tab"],
                "fields": (
                    "status",
                    "schedule",
                    "periodic_task_link",
                    "owner",
                    "last_edited_by",
                    "edited_at",
                    "approved_by",
                    "approved_at",
                    "recent_sends",
                    "audit_link",
                ),
            },
        ),
    )
    actions_detail = (
        "send_now",
        "schedule_campaign",
        "unschedule_campaign",
        "approve",
        "send_test_to_me",
    )
    # The plain-words schedule control: each field shows only for the kind it belongs to.
    conditional_fields = {
        "scheduled_at": "schedule_kind == 'once'",
        "schedule_time": "['daily', 'weekly', 'monthly'].includes(schedule_kind)",
        "schedule_weekday": "schedule_kind == 'weekly'",
        "schedule_day": "schedule_kind == 'monthly'",
        "schedule_crontab": "schedule_kind == 'crontab'",
        "schedule_timezone": "schedule_kind != 'manual' && schedule_kind != 'once'",
    }
    change_form_outer_after_template = "admin/campaigns/campaign_tools.html"
    changelist_defer = ("html_body", "text_body")
    show_full_result_count = False
    list_select_related = ("owner",)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "audiences":
            # Unwrapped (no "add another" wrapper), so the schedule control's Alpine state sees
            # a plain checkbox group and keeps the ticked audiences as a list.
            return db_field.formfield(widget=UnfoldAdminCheckboxSelectMultipleWidget)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        return [*CampaignToolViews(self).urls(), *super().get_urls()]

    def get_actions_detail(self, request: HttpRequest, object_id: int | str) -> list[Any]:
        """Approve and test always; of the status controls, those the campaign offers now."""
        campaign = Campaign.objects.filter(pk=object_id).only("status").first()
        offered = campaign_controls_for(campaign) if campaign else []
        hidden = {name for control, name in CONTROL_ACTIONS.items() if control not in offered}
        prefix = "campaigns_campaign_"  # Unfold names each action <app>_<model>_<method>
        actions = super().get_actions_detail(request, object_id)
        return [a for a in actions if a.action_name.removeprefix(prefix) not in hidden]

    @display(description="Status", label=STATUS_COLOURS)
    def status_badge(self, obj: Campaign) -> str:
        return obj.status

    @display(description="Schedule")
    def schedule(self, obj: Campaign) -> str:
        return schedule_describe(obj)

    @display(description="Latest sends")
    def recent_sends(self, obj: Campaign) -> str:
        """The last few sends only: a recurring campaign collects hundreds over the years."""
        if obj.pk is None:
            return "—"
        sends = list(obj.sends.order_by("-id")[:RECENT_SENDS])
        if not sends:
            return "No send yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{} / {}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:campaigns_send_change", args=[send.pk]),
                    send.occurrence_key,
                    send.get_status_display(),
                    send.done_count,
                    send.total,
                    f"{send.started_at:%Y-%m-%d %H:%M}" if send.started_at else "—",
                )
                for send in sends
            ),
        )
        every = reverse("admin:campaigns_send_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html(
            '<table class="opsdash-table"><thead><tr><th>Occurrence</th><th>Status</th>'
            "<th>Done</th><th>Started</th></tr></thead><tbody>{}</tbody></table>"
            '<a class="text-primary-600" href="{}">All sends of this campaign →</a>',
            rows,
            every,
        )

    @display(description="Audit trail")
    def audit_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:campaigns_auditentry_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html('<a href="{}">Who did what to this campaign</a>', url)

    @display(description="Beat task")
    def periodic_task_link(self, obj: Campaign) -> str:
        if obj.periodic_task_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', admin_url(obj.periodic_task), obj.periodic_task)

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        """A started send keeps what it was composed with; a finished campaign is a record."""
        fields = [*super().get_readonly_fields(request, obj)]
        status = obj.status if obj is not None else Campaign.Status.DRAFT
        for field in CampaignForm.Meta.fields:
            if campaign_services.campaign_edit_refusal(status=status, changed=[field]):
                fields.append(field)
        return fields

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        was = obj.status
        audiences = form.cleaned_data["audiences"] if "audiences" in form.fields else None
        campaign_services.campaign_save(
            campaign=obj, by=request.user, changed=form.changed_data, audiences=audiences
        )
        if was == Campaign.Status.SCHEDULED and obj.status == Campaign.Status.DRAFT:
            messages.warning(
                request,
                f"“{obj.name}” is back to draft: an edit removes its schedule and clears its "
                "approval. Schedule it again once it is approved.",
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The audiences were saved by campaign_save with the rest of the edit (they count as one).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        campaign_services.campaign_delete(campaign=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.delete_model(request, campaign)

    def _campaign(self, object_id: Any) -> Campaign:
        return Campaign.objects.get(pk=object_id)

    def _back(self, object_id: Any) -> str:
        return reverse("admin:campaigns_campaign_change", args=[object_id])

    def _run(
        self,
        request: HttpRequest,
        object_id: Any,
        service: CampaignService,
        success: Callable[[Campaign], str],
    ) -> HttpResponse:
        """Runs one campaign service for the user who pressed the button, then goes back."""
        campaign = self._campaign(object_id)
        return run_service(
            request,
            lambda: service(campaign=campaign, by=request.user),
            success=success(campaign),
            redirect_to=self._back(object_id),
        )

    @action(description="Send now", permissions=["send"], icon="send", attrs=POST_ACTION)
    def send_now(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return self._run(
            request,
            object_id,
            campaign_services.campaign_send_now,
            lambda c: f"“{c.name}” is being sent. Progress shows under Sends.",
        )

    @action(description="Schedule", permissions=["send"], icon="schedule", attrs=POST_ACTION)
    def schedule_campaign(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return self._run(
            request,
            object_id,
            campaign_services.campaign_schedule,
            lambda c: f"“{c.name}” is scheduled: {schedule_describe(c)}.",
        )

    @action(description="Unschedule", permissions=["send"], icon="event_busy", attrs=POST_ACTION)
    def unschedule_campaign(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return self._run(
            request,
            object_id,
            campaign_services.campaign_unschedule,
            lambda c: f"“{c.name}” is back to draft; its schedule is removed.",
        )

    @action(description="Approve", permissions=["approve"], icon="verified", attrs=POST_ACTION)
    def approve(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return self._run(
            request,
            object_id,
            campaign_services.campaign_approve,
            lambda c: f"“{c.name}” is approved.",
        )

    @action(
        description="Send a test to me",
        permissions=["send_test"],
        icon="outgoing_mail",
        attrs=POST_ACTION,
    )
    def send_test_to_me(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        if refused := post_required(request):
            return refused
        email = getattr(request.user, "email", "")
        try:
            task_id = campaign_services.campaign_send_test(
                campaign=self._campaign(object_id), by=request.user, to_email=email
            )
        except ValidationError as exc:
            for text in exc.messages:
                messages.error(request, text)
            return HttpResponseRedirect(self._back(object_id))
        messages.success(request, f"A test message of the saved campaign is on its way to {email}.")
        return HttpResponseRedirect(f"{self._back(object_id)}?test_task={task_id}#test-send")
