"""django-celery-beat and django-celery-results admins, re-registered under Unfold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
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

from campaigns.admin.base import EstimatedCountPaginator, id_link
from campaigns.models import Campaign, Send, TaskLink
from campaigns.selectors.sends import results_of_tasks, send_task_ids

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


class UnfoldTaskSelectWidget(UnfoldAdminSelectWidget, TaskSelectWidget):
    pass


class UnfoldPeriodicTaskForm(PeriodicTaskForm):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = UnfoldTaskSelectWidget()


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BasePeriodicTaskAdmin, ModelAdmin):
    form = UnfoldPeriodicTaskForm


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(ModelAdmin):
    pass


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(BaseCrontabScheduleAdmin, ModelAdmin):
    pass


@admin.register(SolarSchedule)
class SolarScheduleAdmin(ModelAdmin):
    pass


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(BaseClockedScheduleAdmin, ModelAdmin):
    pass


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
        return [(name, name.removeprefix("campaigns.tasks.")) for name in TASK_NAMES]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TaskResult]
    ) -> QuerySet[TaskResult]:
        value = self.value()
        return queryset.filter(task_name=value) if value else queryset


class TaskStateFilter(admin.SimpleListFilter):
    """Celery's states as fixed choices (the stock filter runs SELECT DISTINCT status)."""

    title = "state"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        states = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
        return [(state, state.title()) for state in states]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TaskResult]
    ) -> QuerySet[TaskResult]:
        value = self.value()
        return queryset.filter(status=value) if value else queryset


TASK_NAMES = (
    "campaigns.tasks.launch_send",
    "campaigns.tasks.fire_scheduled_send",
    "campaigns.tasks.deliver_batch",
    "campaigns.tasks.send_test_message",
    "campaigns.tasks.run_import",
    "campaigns.tasks.reap_deliveries",
)


@admin.register(TaskResult)
class TaskResultAdmin(BaseTaskResultAdmin, ModelAdmin):
    list_display = ("task_id", "task_name", "status", "date_done", "worker", "campaign_link")
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        links = TaskLink.objects.filter(task_id=OuterRef("task_id"))
        queryset: QuerySet[TaskResult] = super().get_queryset(request)
        return queryset.annotate(
            link_send_id=Subquery(links.values("send_id")[:1]),
            link_campaign_id=Subquery(links.values("campaign_id")[:1]),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: TaskResult | None = None) -> list[str]:
        # django-celery-results' admin has no annotations (its models have stubs, not its admin):
        # this names the type its method has.
        stock: Callable[[HttpRequest, TaskResult | None], Sequence[str]] = (
            super().get_readonly_fields
        )
        return [*stock(request, obj), "campaign_link"]

    def get_fieldsets(self, request: HttpRequest, obj: TaskResult | None = None) -> Any:
        return [("Served", {"fields": ("campaign_link",)}), *super().get_fieldsets(request, obj)]

    @display(description="Campaign / send")
    def campaign_link(self, obj: TaskResult) -> str:
        send_id = getattr(obj, "link_send_id", None)
        if send_id:
            return id_link(Send, send_id, "Send")
        return id_link(Campaign, getattr(obj, "link_campaign_id", None) or None, "Campaign")


@admin.register(GroupResult)
class GroupResultAdmin(BaseGroupResultAdmin, ModelAdmin):
    pass
