"""Recipient imports: upload, map the columns (the preview), run, read the report.

Every import, small or large, is an ImportJob; the views only call campaigns.services.imports
(which runs a small file in the request and queues a large one) and read its selectors.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.widgets import UnfoldAdminFileFieldWidget, UnfoldAdminSelectWidget, UnfoldBooleanWidget

from campaigns.admin.base import EstimatedCountPaginator
from campaigns.models import Audience, ImportJob
from campaigns.selectors import imports as import_selectors
from campaigns.selectors.dashboard import running_imports
from campaigns.services import imports as import_services
from campaigns.services.audiences import RESUBSCRIBE_PERMISSION

TARGET_CHOICES = [
    (import_services.TARGET_EMAIL, "Email address"),
    (import_services.TARGET_FIRST_NAME, "First name"),
    (import_services.TARGET_LAST_NAME, "Last name"),
    (import_services.TARGET_ATTRIBUTE, "Attribute (kept under the column's name)"),
    (import_services.TARGET_IGNORE, "Ignore"),
]
STATUS_COLOURS = {
    "pending": "info",
    "running": "warning",
    "completed": "success",
    "failed": "danger",
    "cancelled": "danger",
    "abandoned": "info",  # "Abandoned — never started": nobody pressed Start; nothing went wrong
}


# An import creates and changes recipients, so it takes the editor's recipient permissions
# as well as the right to create an import job.
IMPORT_PERMISSIONS = (
    "campaigns.add_importjob",
    "campaigns.add_recipient",
    "campaigns.change_recipient",
)
REJECTED_ROWS_SHOWN = 20


def may_import(request: HttpRequest) -> bool:
    return bool(request.user.has_perms(IMPORT_PERMISSIONS))


def owns(request: HttpRequest, job: ImportJob) -> bool:
    """An import's file, mapping and controls are its uploader's (and a superuser's)."""
    return bool(request.user.is_superuser) or job.created_by_id == request.user.pk


def own_job(request: HttpRequest, pk: int) -> ImportJob:
    """The job, when this user uploaded it; another user's job is a 404, so its id tells
    nothing and its file is never served."""
    job = get_object_or_404(ImportJob, pk=pk)
    if not owns(request, job):
        raise Http404("No such import.")
    return job


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV or Excel file",
        widget=UnfoldAdminFileFieldWidget(attrs={"accept": ".csv,.txt,.tsv,.xlsx"}),
        help_text="CSV in UTF-8 (with or without BOM), UTF-16 or Windows-1252; comma, semicolon, "
        "tab or pipe separated; or an .xlsx workbook (its first sheet). The first line names "
        "the columns.",
    )
    audience = forms.ModelChoiceField(
        queryset=Audience.objects.all(),
        required=False,
        widget=UnfoldAdminSelectWidget,
        help_text="Every imported address is subscribed to this audience.",
    )
    resubscribe = forms.BooleanField(
        required=False,
        widget=UnfoldBooleanWidget,
        help_text="Re-activate addresses that unsubscribed or bounced. Leave off unless these "
        "people asked to be subscribed again.",
    )
    all_or_nothing = forms.BooleanField(
        required=False,
        widget=UnfoldBooleanWidget,
        help_text="Write nothing if any row is invalid.",
    )

    def __init__(self, *args: Any, may_resubscribe: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_resubscribe:
            # Not offered, so a hand-made POST carrying it is ignored (and the service would
            # refuse it anyway).
            del self.fields["resubscribe"]


class ImportMappingForm(forms.Form):
    """One choice per column of the file, pre-filled with the guessed mapping."""

    background = forms.BooleanField(
        label="Import in the background",
        required=False,
        widget=UnfoldBooleanWidget,
        help_text="A worker imports the file while you watch its progress. Large files always "
        "go this way; smaller ones are imported at once and show their report.",
    )

    def __init__(self, *args: Any, job: ImportJob, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers: list[str] = list(job.mapping.get("headers", []))
        guessed: list[str] = list(job.mapping.get("columns", []))
        for index, header in enumerate(self.headers):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=header,
                choices=TARGET_CHOICES,
                initial=guessed[index] if index < len(guessed) else "ignore",
                widget=UnfoldAdminSelectWidget,
            )

    def column_fields(self) -> list[forms.BoundField]:
        return [self[f"column_{i}"] for i in range(len(self.headers))]

    def columns(self) -> list[str]:
        return [self.cleaned_data[f"column_{i}"] for i in range(len(self.headers))]


def upload_to_job(request: HttpRequest, form: ImportUploadForm) -> ImportJob | None:
    """Creates the job from a valid upload form, or puts the file's problem on the form."""
    try:
        return import_services.import_job_create(
            upload=form.cleaned_data["file"],
            audience=form.cleaned_data["audience"],
            resubscribe=form.cleaned_data.get("resubscribe", False),
            all_or_nothing=form.cleaned_data["all_or_nothing"],
            created_by=request.user,
        )
    except import_services.ImportFileError as exc:
        form.add_error("file", str(exc))
        return None


class ImportStatusFilter(admin.SimpleListFilter):
    """The statuses, and "Running or queued": the imports the dashboard counts as running (a
    queued one has its task; an upload left at the mapping page is not counted)."""

    title = "status"
    parameter_name = "status"
    ACTIVE = "active"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.ACTIVE, "Running or queued"), *ImportJob.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
        value = self.value()
        if value == self.ACTIVE:
            return queryset & running_imports()
        return queryset.filter(status=value) if value else queryset


@admin.register(ImportJob)
class ImportJobAdmin(ModelAdmin):
    list_display = (
        "id",
        "original_name",
        "audience",
        "status_badge",
        "progress",
        "created_count",
        "updated_count",
        "invalid_count",
        "created_by",
        "created_at",
    )
    list_filter = (ImportStatusFilter,)
    list_select_related = ("audience", "created_by")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    change_form_template = "admin/campaigns/importjob/change_form.html"
    fields = (
        "original_name",
        "audience",
        "status",
        "message",
        "resubscribe",
        "all_or_nothing",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "skipped_count",
        "invalid_count",
        "report_link",
        "task_id",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a job is read-only; its views below change it through services

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not owns(request, obj):
            return tuple(f for f in self.fields if f != "report_link")
        return self.fields

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/mapping/", view(self.mapping_view), name="campaigns_importjob_mapping"),
            path(
                "<int:pk>/progress/", view(self.progress_view), name="campaigns_importjob_progress"
            ),
            path("<int:pk>/cancel/", view(self.cancel_view), name="campaigns_importjob_cancel"),
            path("<int:pk>/report/", view(self.report_view), name="campaigns_importjob_report"),
            *super().get_urls(),
        ]

    @display(description="Status", label=STATUS_COLOURS)
    def status_badge(self, obj: ImportJob) -> tuple[str, str]:
        # (colour key, words): "Abandoned — never started" rather than the stored value.
        return obj.status, obj.get_status_display()

    @display(description="Progress")
    def progress(self, obj: ImportJob) -> str:
        if not obj.total_rows:
            return "—"
        return f"{min(100, 100 * obj.processed_rows // obj.total_rows)} %"

    @display(description="Rejected rows")
    def report_link(self, obj: ImportJob) -> str:
        if not obj.error_report:
            return "—"
        url = reverse("admin:campaigns_importjob_report", args=[obj.pk])
        return format_html('<a href="{}">Download the rejected rows (CSV)</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return may_import(request)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The upload: the file is stored and sniffed, then the mapping page previews it."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(
            request.POST or None,
            request.FILES or None,
            may_resubscribe=request.user.has_perm(RESUBSCRIBE_PERMISSION),
        )
        if request.method == "POST" and form.is_valid():
            job = upload_to_job(request, form)
            if job is not None:
                return HttpResponseRedirect(
                    reverse("admin:campaigns_importjob_mapping", args=[job.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import recipients",
            "form": form,
            "max_mb": settings.OPSDASH_IMPORT_MAX_BYTES // (1024 * 1024),
        }
        return TemplateResponse(request, "admin/campaigns/importjob/upload.html", context)

    def mapping_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The preview: each column with its first values and a target; posting runs it."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        job = own_job(request, pk)
        change_url = reverse("admin:campaigns_importjob_change", args=[job.pk])
        if job.status != ImportJob.Status.PENDING or job.task_id:
            return HttpResponseRedirect(change_url)
        form = ImportMappingForm(
            request.POST or None,
            job=job,
            initial={"background": import_services.import_job_runs_in_background(
                job=job, background=False
            )},
        )  # fmt: skip
        if request.method == "POST" and form.is_valid():
            try:
                job = import_services.import_job_start(
                    job=job,
                    columns=form.columns(),
                    by=request.user,
                    background=form.cleaned_data["background"],
                )
            except import_services.ImportFileError as exc:
                form.add_error(None, str(exc))
            else:
                _started_message(request, job)
                return HttpResponseRedirect(change_url)
        sample = import_selectors.file_sample(job=job, rows=5)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Map the columns of {job.original_name}",
            "job": job,
            "form": form,
            "columns": [
                (field, [row[i] for row in sample if i < len(row)])
                for i, field in enumerate(form.column_fields())
            ],
        }
        return TemplateResponse(request, "admin/campaigns/importjob/mapping.html", context)

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=pk)
        return JsonResponse(import_selectors.import_job_progress(job=job))

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_add_permission(request):
            raise PermissionDenied
        job = own_job(request, pk)
        try:
            import_services.import_job_cancel(job=job, by=request.user)
        except import_services.ImportFileError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Cancel requested: the import stops without writing.")
        return HttpResponseRedirect(reverse("admin:campaigns_importjob_change", args=[pk]))

    def report_view(self, request: HttpRequest, pk: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = own_job(request, pk)
        if not job.error_report:
            raise Http404("This import has no rejected rows.")
        return FileResponse(
            job.error_report.open("rb"),
            as_attachment=True,
            filename=f"import-{job.pk}-rejected-rows.csv",
            content_type="text/csv",
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The report: progress while it runs; counts and the first rejected rows at the end."""
        job = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if job is not None:
            extra["import_job"] = job
            extra["import_progress"] = import_selectors.import_job_progress(job=job)
            # The rejected rows are the file's own lines: its uploader's only, like the report.
            is_owner = owns(request, job)
            extra["is_owner"] = is_owner
            extra["rejected_rows"] = (
                import_selectors.import_job_rejected_rows(job=job, limit=REJECTED_ROWS_SHOWN)
                if is_owner
                else []
            )
            extra["rejected_rows_limit"] = REJECTED_ROWS_SHOWN
            extra["can_cancel"] = (
                is_owner
                and self.has_add_permission(request)
                and job.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)
            )
        response: HttpResponse = super().change_view(request, object_id, form_url, extra)
        return response


def _started_message(request: HttpRequest, job: ImportJob) -> None:
    if job.status == ImportJob.Status.PENDING:
        messages.success(request, "The import is queued; this page shows its progress.")
    elif job.status == ImportJob.Status.COMPLETED:
        messages.success(request, job.message)
    else:
        messages.error(request, job.message)
