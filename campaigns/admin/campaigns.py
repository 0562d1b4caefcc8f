"""Campaigns, their sends and deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

from campaigns.admin.base import (
    POST_ACTION,
    STATUS_COLOURS,
    ChangelistDefer,
    admin_url,
    post_required,
    run_service,
)
from campaigns.admin.campaign_form import CONTENT_FIELDSETS, CampaignForm
from campaigns.admin.campaign_preflight import (
    PreflightViews,
    preflight_blocking,
    preflight_panel,
)
from campaigns.admin.campaign_toolbar import CONTROL_ACTIONS, LABELS, toolbar
from campaigns.admin.campaign_views import CampaignToolViews
from campaigns.models import Audience, Campaign, SeedList
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.selectors.audiences import audience_label, audience_subscriber_counts
from campaigns.selectors.sends import send_progress_of_counters
from campaigns.services import campaigns as campaign_services
from campaigns.services.audit import By
from campaigns.services.authoring.checks import content_warnings
from campaigns.services.controls import FINAL, Control, campaign_offer, campaign_offers
from campaigns.services.scheduling import schedule_describe
from campaigns.services.transitions import IllegalTransition

RECENT_SENDS = 10
# The schedule fields each kind uses (a read-only page shows only these).
_TIME_AND_ZONE = ("schedule_time", "schedule_timezone")
SCHEDULE_FIELDS_OF_KIND: dict[str, tuple[str, ...]] = {
    Campaign.ScheduleKind.ONCE: ("scheduled_at",),
    Campaign.ScheduleKind.DAILY: _TIME_AND_ZONE,
    Campaign.ScheduleKind.WEEKLY: ("schedule_weekday", *_TIME_AND_ZONE),
    Campaign.ScheduleKind.MONTHLY: ("schedule_day", *_TIME_AND_ZONE),
    Campaign.ScheduleKind.CRONTAB: ("schedule_crontab", "schedule_timezone"),
}


class CampaignService(Protocol):
    """A campaign service staff run from a button: it takes the campaign and who pressed."""

    def __call__(self, *, campaign: Campaign, by: By) -> object: ...


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
        "text_body_as_written",  # in place of text_body where the content is read-only
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
        *CONTENT_FIELDSETS,
        (
            "Audience",
            {"classes": ["tab"], "fields": ("audiences", "rate_limit_per_minute", "channel")},
        ),
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
    actions_detail = tuple(CONTROL_ACTIONS.values())
    # The plain-words schedule control: each field shows only for the kind it belongs to. Where
    # the kind is read-only it is no form field, so Alpine has no ``schedule_kind``: the guard
    # shows the field, and get_fieldsets keeps only those of the stored kind.
    conditional_fields = {
        field: f"typeof schedule_kind === 'undefined' || {kinds}"
        for field, kinds in {
            "scheduled_at": "schedule_kind == 'once'",
            "schedule_time": "['daily', 'weekly', 'monthly'].includes(schedule_kind)",
            "schedule_weekday": "schedule_kind == 'weekly'",
            "schedule_day": "schedule_kind == 'monthly'",
            "schedule_crontab": "schedule_kind == 'crontab'",
            "schedule_timezone": "schedule_kind != 'manual' && schedule_kind != 'once'",
        }.items()
    }
    change_form_outer_before_template = "admin/campaigns/campaign/toolbar_notes.html"
    change_form_outer_after_template = "admin/campaigns/campaign_tools.html"
    changelist_defer = ("body", "text_body")
    show_full_result_count = False
    list_select_related = ("owner",)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "audiences":
            # Unwrapped (no "add another" wrapper), so the schedule control's Alpine state sees
            # a plain checkbox group and keeps the ticked audiences as a list.
            field = db_field.formfield(widget=UnfoldAdminCheckboxSelectMultipleWidget)
            counts = audience_subscriber_counts(Audience.objects.values_list("pk", flat=True))
            field.label_from_instance = lambda a: audience_label(a, counts.get(a.pk, 0))
            return field
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        return [*CampaignToolViews(self).urls(), *PreflightViews(self).urls(), *super().get_urls()]

    def get_actions_detail(self, request: HttpRequest, object_id: int | str) -> list[Any]:
        """The toolbar's buttons: exactly the controls services.controls offers this user now."""
        campaign = Campaign.objects.filter(pk=object_id).first()
        offers = campaign_offers(campaign=campaign, user=request.user) if campaign else []
        wanted = {CONTROL_ACTIONS[o.control] for o in offers if o.available}
        prefix = "campaigns_campaign_"  # Unfold names each action <app>_<model>_<method>
        actions = super().get_actions_detail(request, object_id)
        return [a for a in actions if a.action_name.removeprefix(prefix) in wanted]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        """Draws the unavailable controls too, greyed out with their reason, in toolbar order."""
        if obj is not None:
            offers = campaign_offers(campaign=obj, user=request.user)
            # The page's template draws the toolbar (greyed entries need no Alpine state), so
            # Unfold's own loop over actions_detail gets nothing to draw.
            context["campaign_toolbar"] = toolbar(context.get("actions_detail") or [], offers)
            context["actions_detail"] = []
            context["unavailable_offers"] = [
                (LABELS[o.control], o.reason) for o in offers if not o.available
            ]
            context["campaign_read_only"] = obj.status in FINAL
            context["may_duplicate"] = self.has_duplicate_permission(request, obj.pk)
            context["campaign_reader_only"] = not offers
            context["may_send_test"] = request.user.has_perm("campaigns.send_test_campaign")
            context["seed_lists"] = list(SeedList.objects.all()[:100])
            context["preflight"] = preflight_panel(campaign=obj, user=request.user)
        response: HttpResponse = super().render_change_form(
            request, context, add, change, form_url, obj
        )
        return response

    def has_duplicate_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return bool(request.user.has_perm("campaigns.add_campaign"))

    def has_change_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        # A sent, cancelled or failed campaign is a record: its page is read-only for everyone.
        if obj is not None and obj.status in FINAL:
            return False
        return bool(super().has_change_permission(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        # Only a campaign that never went out may be deleted; the rest stay on record.
        if obj is not None and obj.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
            return False
        return bool(super().has_delete_permission(request, obj))

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
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:campaigns_send_change", args=[send.pk]),
                    send.occurrence_key,
                    send.get_status_display(),
                    # In words from the counters (no query per send): "294 of 294 handled:
                    # 120 sent, 174 skipped", never a bare "294 / 294".
                    send_progress_of_counters(send).summary,
                    _when(send.started_at),
                )
                for send in sends
            ),
        )
        every = reverse("admin:campaigns_send_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html(
            '<table class="opsdash-table"><thead><tr><th>Occurrence</th><th>Status</th>'
            "<th>Progress</th><th>Started</th></tr></thead><tbody>{}</tbody></table>"
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

    @display(description="Schedule entry")
    def periodic_task_link(self, obj: Campaign) -> str:
        """Whether the scheduler holds an entry for this campaign; the entry itself is managed
        from here (its raw editor is for superusers, who reach it through the link)."""
        if obj.periodic_task_id is None:
            return "None: the scheduler will not send this campaign by itself"
        return format_html(
            'Active: the scheduler fires it (<a href="{}">entry</a>)', admin_url(obj.periodic_task)
        )

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        """Where content and schedule are read-only (a started or finished send, a reader),
        the Text body reads as written, line breaks kept, and the Schedule tab lists only the
        fields of the campaign's own kind (no form state to hide the others by)."""
        fieldsets = super().get_fieldsets(request, obj)
        editable = self.has_change_permission(request, obj) and (
            "schedule_kind" not in self.get_readonly_fields(request, obj)
        )
        if obj is None or editable:
            return fieldsets
        shown = {"schedule_kind", *SCHEDULE_FIELDS_OF_KIND.get(obj.schedule_kind, ())}
        read_only = []
        for name, options in fieldsets:
            fields = [
                "text_body_as_written" if field == "text_body" else field
                for field in options["fields"]
                if name != "Schedule" or field in shown
            ]
            read_only.append((name, {**options, "fields": fields}))
        return read_only

    @display(description="Plain-text version")
    def text_body_as_written(self, obj: Campaign) -> str:
        # A plain-text body's line breaks and indents are its layout: keep them.
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.text_body)

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
        # Saved, but worth a second look: said every time, never silently dropped.
        for warning in content_warnings(campaign=obj):
            messages.warning(request, warning.message)
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
        """Deletes those that never went out; says which stay, and why, instead of failing."""
        for campaign in queryset:
            try:
                self.delete_model(request, campaign)
            except IllegalTransition as exc:
                messages.warning(request, str(exc))

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

    def _confirm(
        self, request: HttpRequest, campaign: Campaign, control: Control, **context: Any
    ) -> HttpResponse:
        """The GET half of a confirmed action: what will happen, with the numbers, and a form."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": campaign,
            "campaign": campaign,
            "control": control,
            "offer": campaign_offer(campaign=campaign, user=request.user, control=control),
            "title": f"{LABELS[control]}: “{campaign.name}”",
            "back": self._back(campaign.pk),
            **context,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm.html", context)

    def _confirm_send(
        self, request: HttpRequest, campaign: Campaign, control: Control
    ) -> HttpResponse:
        plan = campaign_selectors.campaign_send_plan(campaign=campaign)
        return self._confirm(
            request,
            campaign,
            control,
            plan=plan,
            schedule=schedule_describe(campaign),
            preflight_blocking=preflight_blocking(campaign=campaign),
        )

    @action(description="Send now", permissions=["send"], icon="send")
    def send_now(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        campaign = self._campaign(object_id)
        if request.method != "POST":
            return self._confirm_send(request, campaign, Control.SEND_NOW)
        try:
            key = campaign_services.campaign_send_now(campaign=campaign, by=request.user)
        except (ValidationError, IllegalTransition) as exc:
            _refused(request, exc)
            return HttpResponseRedirect(self._back(object_id))
        messages.success(request, _sending_message(campaign, key))
        return HttpResponseRedirect(self._back(object_id))

    @action(description="Schedule", permissions=["send"], icon="schedule")
    def schedule_campaign(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        if request.method != "POST":
            return self._confirm_send(request, self._campaign(object_id), Control.SCHEDULE)
        return self._run(
            request,
            object_id,
            campaign_services.campaign_schedule,
            lambda c: f"“{c.name}” is scheduled: {schedule_describe(c)}.",
        )

    @action(description="Cancel the send", permissions=["send"], icon="cancel")
    def cancel_campaign(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        campaign = self._campaign(object_id)
        if request.method != "POST":
            plan = campaign_selectors.campaign_cancel_plan(campaign=campaign)
            return self._confirm(request, campaign, Control.CANCEL, cancel=plan)
        return self._run(
            request,
            object_id,
            campaign_services.campaign_cancel,
            lambda c: f"“{c.name}” is cancelled: the recipients not yet sent are skipped.",
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
        description="Duplicate",
        # A method, not "campaigns.add_campaign": Unfold checks dotted names in the database
        # at start-up, before a fresh database has its tables.
        permissions=["duplicate"],
        icon="content_copy",
        attrs=POST_ACTION,
    )
    def duplicate(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """A new draft from this campaign, whatever its status; the page moves to the copy."""
        if refused := post_required(request):
            return refused
        original = self._campaign(object_id)
        copy = campaign_services.campaign_duplicate(campaign=original, by=request.user)
        messages.success(
            request,
            f"“{copy.name}” is a new draft made from “{original.name}”, with its content and "
            "audiences. Change what you need, then send or schedule it.",
        )
        return HttpResponseRedirect(self._back(copy.pk))

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


def _when(moment: datetime | None) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}" if moment else "—"


def _refused(request: HttpRequest, exc: Exception) -> None:
    texts = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
    for text in texts:
        messages.error(request, text)


def _sending_message(campaign: Campaign, key: str) -> SafeString:
    """ "… is being sent", linking to its send (the link waits for the send to exist)."""
    url = reverse("admin:campaigns_campaign_send_for", args=[campaign.pk, key])
    return format_html(
        '“{}” is being sent. <a class="underline font-semibold" href="{}">Follow its send</a>',
        campaign.name,
        url,
    )
