"""django-celery-beat and django-celery-results admins, re-registered under Unfold.

Task results are a record the workers write: nobody adds, edits or deletes them here (the
retention job purges old ones), and each reads as a title in words with its duration and
output. The beat editors are for superusers only, and a periodic task that belongs to a
campaign is read-only even for them: its campaign's schedule is the one place to change it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django_celery_beat.admin import ClockedScheduleAdmin as BaseClockedScheduleAdmin
from django_celery_beat.admin import CrontabScheduleAdmin as BaseCrontabScheduleAdmin
from django_celery_beat.admin import PeriodicTaskAdmin as BasePeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm, TaskSelectWidget
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_celery_results.admin import GroupResultAdmin as BaseGroupResultAdmin
from django_celery_results.admin import TaskResultAdmin as BaseTaskResultAdmin
from django_celery_results.models import GroupResult, TaskResult
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from campaigns.admin.base import EstimatedCountPaginator, ReadOnlyAdminMixin, id_link
from campaigns.models import Campaign, ImportJob, Send, TaskLink
from campaigns.selectors.occurrence import campaign_label, send_label
from campaigns.selectors.sends import results_of_tasks, send_task_ids
from campaigns.selectors.tasks import (
    STATE_WORDS,
    TASK_WORDS,
    result_created,
    result_started,
    result_took,
    state_words,
    task_output,
    task_title,
    task_words,
    traceback_last_line,
)
from campaigns.selectors.zoned import zoned

for model in (
    PeriodicTask,
    IntervalSchedule,
    CrontabSchedule,
    SolarSchedule,
    ClockedSchedule,
    TaskResult,
    GroupResult,
):
    admin.site.unregister(model)


# --- Beat: superusers only; a campaign's task is read-only, managed from its campaign --------


class SuperuserOnlyMixin:
    """The raw schedule editors are a superuser's tool: staff schedule from the campaign."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


class UnfoldTaskSelectWidget(UnfoldAdminSelectWidget, TaskSelectWidget):
    pass


class UnfoldPeriodicTaskForm(PeriodicTaskForm):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = UnfoldTaskSelectWidget()
        if "start_time" in self.fields:  # entered and shown on the site's clock: say which
            zone = timezone.get_current_timezone_name()
            self.fields["start_time"].help_text = f"In {zone}. Leave empty to start at once."


def owning_campaign(task: PeriodicTask | None) -> Campaign | None:
    """The campaign whose schedule this periodic task is, if any."""
    if task is None or task.pk is None:
        return None
    try:
        campaign: Campaign = task.campaign  # the reverse one-to-one of Campaign.periodic_task
    except Campaign.DoesNotExist:
        return None
    return campaign


def managed_notice(campaign: Campaign) -> SafeString:
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    return format_html(
        'Managed by campaign <a href="{}" class="text-primary-600 underline">“{}”</a>: '
        "change its schedule there.",
        url,
        campaign.name,
    )


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(SuperuserOnlyMixin, BasePeriodicTaskAdmin, ModelAdmin):
    form = UnfoldPeriodicTaskForm
    list_display = ("name", "enabled", "scheduler", "starts", "last_run", "managed_by")
    readonly_fields = ("last_run_at", "crontab_translation", "managed_by", "starts", "last_run")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PeriodicTask]:
        queryset: QuerySet[PeriodicTask] = super().get_queryset(request)
        return queryset.select_related("campaign")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and owning_campaign(obj) is None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and owning_campaign(obj) is None

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = [_zoned_fields(fieldset) for fieldset in super().get_fieldsets(request, obj)]
        if owning_campaign(obj) is None:
            return fieldsets
        return [("Managed by its campaign", {"fields": ("managed_by",)}), *fieldsets]

    def get_actions(self, request: HttpRequest) -> Any:
        """The bulk actions (enable, disable, toggle, run) leave campaigns' tasks alone."""
        actions = super().get_actions(request)
        for name, (func, action_name, description) in list(actions.items()):
            actions[name] = (_sparing_campaigns(func), action_name, description)
        return actions

    @display(description="Campaign")
    def managed_by(self, obj: PeriodicTask) -> SafeString | str:
        campaign = owning_campaign(obj)
        return managed_notice(campaign) if campaign else "—"

    @display(description="Starts", ordering="start_time")
    def starts(self, obj: PeriodicTask) -> str:
        return zoned(obj.start_time, empty="at once")

    @display(description="Last run", ordering="last_run_at")
    def last_run(self, obj: PeriodicTask) -> str:
        return zoned(obj.last_run_at, empty="never")


def _zoned_fields(fieldset: Any) -> Any:
    """The last run shown with its time zone (the stock field shows a bare time)."""
    name, options = fieldset
    fields = tuple("last_run" if field == "last_run_at" else field for field in options["fields"])
    return (name, {**options, "fields": fields})


def _sparing_campaigns(func: Callable[..., Any]) -> Callable[..., Any]:
    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        owned = queryset.filter(campaign__isnull=False).count()
        if owned:
            messages.warning(
                request,
                f"{owned} selected task(s) belong to campaigns and were left alone: "
                "change them from their campaign.",
            )
        return func(modeladmin, request, queryset.filter(campaign__isnull=True))

    return action


class CampaignScheduleMixin(SuperuserOnlyMixin):
    """A schedule a campaign's task runs on is that campaign's: changing or deleting it here
    would move (or drop) the campaign's sends behind its back, so it is read-only too."""

    schedule_field = ""  # PeriodicTask's foreign key to this kind of schedule

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not self._a_campaigns(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._a_campaigns(obj)

    def _a_campaigns(self, schedule: Any) -> bool:
        if schedule is None:
            return False
        tasks = PeriodicTask.objects.filter(**{self.schedule_field: schedule})
        return bool(tasks.filter(campaign__isnull=False).exists())


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(CampaignScheduleMixin, ModelAdmin):
    schedule_field = "interval"


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(CampaignScheduleMixin, BaseCrontabScheduleAdmin, ModelAdmin):
    schedule_field = "crontab"


@admin.register(SolarSchedule)
class SolarScheduleAdmin(CampaignScheduleMixin, ModelAdmin):
    schedule_field = "solar"


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(CampaignScheduleMixin, BaseClockedScheduleAdmin, ModelAdmin):
    schedule_field = "clocked"
    list_display = ("__str__", "clocked_at")

    @display(description="Time", ordering="clocked_time")
    def clocked_at(self, obj: ClockedSchedule) -> str:
        return zoned(obj.clocked_time)


# --- Task results: a read-only record in words ----------------------------------------------


class SendFilter(admin.SimpleListFilter):
    """?send=<id>: the task results of one send (linked through TaskLink)."""

    title = "send"
    parameter_name = "send"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TaskResult]
    ) -> QuerySet[TaskResult]:
        value = self.value()
        if not value or not value.isdigit():
            return queryset
        return results_of_tasks(queryset, send_task_ids(int(value)))


class TaskNameFilter(admin.SimpleListFilter):
    """Our task names as fixed choices: the stock filter runs SELECT DISTINCT over the table."""

    title = "task"
    parameter_name = "task_name"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return list(TASK_WORDS.items())

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TaskResult]
    ) -> QuerySet[TaskResult]:
        value = self.value()
        return queryset.filter(task_name=value) if value else queryset


class TaskStateFilter(admin.SimpleListFilter):
    """Celery's states as fixed choices (the stock filter runs SELECT DISTINCT status)."""

    title = "outcome"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        states = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
        return [(state, STATE_WORDS[state].capitalize()) for state in states]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TaskResult]
    ) -> QuerySet[TaskResult]:
        value = self.value()
        return queryset.filter(status=value) if value else queryset


TASK_NAMES = tuple(TASK_WORDS)


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdminMixin, BaseTaskResultAdmin, ModelAdmin):
    list_display = (
        "title",
        "outcome",
        "duration",
        "finished",
        "worker",
        "campaign_link",
    )  # the task id is developer detail: on the result's own page only
    list_display_links = ("title",)
    # django-celery-results' admin is unannotated, so mypy infers its class attributes from their
    # values (a 5-tuple of str, a str): our own values differ in shape, hence [assignment].
    list_filter = (TaskStateFilter, TaskNameFilter, "date_done", SendFilter)  # type: ignore[assignment]
    list_per_page = 50
    # Exact task id only: the stock search scans the args and kwargs of every row.
    search_fields = ("=task_id",)  # type: ignore[assignment]
    search_help_text = "The exact task id."
    # The stock date hierarchy runs a DISTINCT over every row's date on each page view.
    date_hierarchy = None  # type: ignore[assignment]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # Nothing to select: there is no bulk action on a record nobody may change.
    actions = None
    fieldsets = (  # type: ignore[assignment]
        (None, {"fields": ("title", "campaign_link", "task_label", "outcome", "duration")}),
        ("When", {"fields": ("created", "started", "finished")}),
        ("Output", {"fields": ("output", "error")}),
        ("Celery", {"fields": ("task_id", "task_name", "worker", "periodic_task_name")}),
    )
    readonly_fields = (  # type: ignore[assignment]
        "title",
        "campaign_link",
        "task_label",
        "outcome",
        "duration",
        "created",
        "started",
        "finished",
        "output",
        "error",
        "task_id",
        "task_name",
        "worker",
        "periodic_task_name",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        links = TaskLink.objects.filter(task_id=OuterRef("task_id"))
        queryset: QuerySet[TaskResult] = super().get_queryset(request)
        return queryset.annotate(
            link_send_id=Subquery(links.values("send_id")[:1]),
            link_campaign_id=Subquery(links.values("campaign_id")[:1]),
            link_campaign_name=Subquery(links.values("campaign__name")[:1]),
            link_send_campaign_name=Subquery(links.values("send__campaign__name")[:1]),
            link_send_occurrence=Subquery(links.values("send__occurrence_key")[:1]),
            link_import_id=Subquery(links.values("import_job_id")[:1]),
            link_import_name=Subquery(links.values("import_job__original_name")[:1]),
        )

    @display(description="Task")
    def title(self, obj: TaskResult) -> str:
        return task_title(task_name=obj.task_name, status=obj.status, about=_served(obj))

    @display(description="Kind of task")
    def task_label(self, obj: TaskResult) -> str:
        return task_words(obj.task_name)

    @display(
        description="Outcome",
        label={"succeeded": "success", "failed": "danger", "retrying": "warning"},
    )
    def outcome(self, obj: TaskResult) -> str:
        return state_words(obj.status)

    @display(description="Duration")
    def duration(self, obj: TaskResult) -> str:
        return result_took(obj)

    @display(description="Created")
    def created(self, obj: TaskResult) -> str:
        return zoned(result_created(obj))

    @display(description="Started")
    def started(self, obj: TaskResult) -> str:
        return zoned(result_started(obj), empty="not recorded")

    @display(description="Finished", ordering="date_done")
    def finished(self, obj: TaskResult) -> str:
        return zoned(obj.date_done)

    @display(description="Returned")
    def output(self, obj: TaskResult) -> SafeString | str:
        output = task_output(obj.result)
        if not output.rows:
            return output.sentence
        body = format_html_join(
            "",
            '<tr><th class="pr-4 py-1 text-left font-medium">{}</th><td class="py-1">{}</td></tr>',
            output.rows,
        )
        return format_html('<table class="text-sm">{}</table>', body)

    @display(description="Error")
    def error(self, obj: TaskResult) -> SafeString | str:
        if not obj.traceback:
            return "No error."
        return format_html(
            '<details><summary class="cursor-pointer">{}</summary>'
            '<pre class="text-xs whitespace-pre-wrap mt-2">{}</pre></details>',
            traceback_last_line(obj.traceback),
            obj.traceback,
        )

    @display(description="Campaign / send")
    def campaign_link(self, obj: TaskResult) -> str:
        send_id = getattr(obj, "link_send_id", None)
        if send_id:
            name = getattr(obj, "link_send_campaign_name", None) or _link_campaign_name(obj)
            label = send_label(name, getattr(obj, "link_send_occurrence", None))
            return _styled(id_link(Send, send_id, "Send", label))
        if import_id := getattr(obj, "link_import_id", None):
            name = getattr(obj, "link_import_name", None) or ""
            return _styled(id_link(ImportJob, import_id, "Import", campaign_label(name)))
        campaign_id = getattr(obj, "link_campaign_id", None) or None
        label = campaign_label(_link_campaign_name(obj))
        return _styled(id_link(Campaign, campaign_id, "Campaign", label))


def _served(result: TaskResult) -> str:
    """ "“Spring newsletter”" or "“people.csv”": what the task served, when it is linked."""
    name = getattr(result, "link_campaign_name", None) or getattr(result, "link_import_name", None)
    return f"“{name}”" if name else ""


def _link_campaign_name(result: TaskResult) -> str:
    return str(getattr(result, "link_campaign_name", None) or "")


def _styled(link: str) -> str:
    """The shared id link, coloured as a link (a read-only field shows it as plain text)."""
    return mark_safe(link.replace("<a ", '<a class="text-primary-600" ', 1))  # noqa: S308


def _task_result_str(result: TaskResult) -> str:
    return task_title(task_name=result.task_name, status=result.status, about=_served(result))


# django-celery-results names a row "<Task: 0b9a… (SUCCESS)>", and the admin shows that name as
# the page's title and breadcrumb: staff read the same title the list shows instead.
TaskResult.__str__ = _task_result_str  # type: ignore[assignment,method-assign]

# The breadcrumbs and the app list name an app by its AppConfig's verbose name, "Celery
# Results" for this one; staff know these records as task results. Renaming it in settings
# would take a subclass of the package's AppConfig for one string.
apps.get_app_config("django_celery_results").verbose_name = "Task results"


@admin.register(GroupResult)
class GroupResultAdmin(ReadOnlyAdminMixin, BaseGroupResultAdmin, ModelAdmin):
    actions = None
