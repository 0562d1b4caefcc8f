"""Small helpers shared by the admin modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.paginator import Paginator
from django.db import connection, models
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from campaigns.services.transitions import IllegalTransition


def admin_url(obj: Any, view: str = "change") -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def id_link(model: type[models.Model], pk: int | None, label: str, name: str = "") -> str:
    """A link to the object's page showing ``name`` (what staff call it: "“Spring newsletter”
    · One-off send"), which the caller reads with its rows (annotated or select_related): the
    object's __str__ would cost a query per row. "<label> #<pk>" when there is no name."""
    if pk is None:
        return "—"
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])
    if name:
        return format_html('<a href="{}">{}</a>', url, name)
    return format_html('<a href="{}">{} #{}</a>', url, label, pk)


# The badge colour of every status shown in the admin (campaigns, sends, deliveries).
STATUS_COLOURS = {
    "draft": "info",
    "scheduled": "info",
    "sending": "warning",
    "running": "warning",
    "paused": "warning",
    "sent": "success",
    "completed": "success",
    "cancelled": "danger",
    "failed": "danger",
    "queued": "info",
    "skipped": "info",
}


def label_html(text: str, kind: str) -> str:
    """Unfold's coloured label, for a change page (which draws read-only fields as text)."""
    return render_to_string("unfold/helpers/label.html", {"text": text, "type": kind})


# Unfold renders detail actions as links. Links marked with this attribute are submitted as a
# POST with the CSRF token by campaigns/static/campaigns/post_actions.js, and the actions refuse
# GET: a link elsewhere on the web can then never send a campaign for a logged-in approver.
POST_ACTION = {"data-opsdash-post": "1"}


def post_required(request: HttpRequest) -> HttpResponse | None:
    return None if request.method == "POST" else HttpResponseNotAllowed(["POST"])


def run_service(
    request: HttpRequest, call: Callable[[], Any], *, success: str, redirect_to: str
) -> HttpResponse:
    """Runs one service call (POST only), turning its refusals into clear admin messages."""
    if refused := post_required(request):
        return refused
    try:
        call()
    except ValidationError as exc:
        for text in exc.messages:
            messages.error(request, text)
    except IllegalTransition as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return HttpResponseRedirect(redirect_to)


class ReadOnlyAdminMixin:
    """For records the system writes (audit entries, deliveries): staff may look, never edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExactEmailSearch:
    """Searches a changelist by one exact, normalised address.

    Addresses are stored lower-cased, so an exact match on the lowered term lets the unique
    index answer; Django's ``=email`` is case-insensitive (UPPER(...) = UPPER(...)), which
    scans a million-row table.
    """

    email_lookup = "email"
    search_fields = ("email",)  # makes the admin show its search box; the lookup is below
    search_help_text = "The exact email address (ada@example.com); part of one finds nothing."

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        local, at, domain = term.rpartition("@")
        if not (at and local and domain):
            # Staff who type part of an address would otherwise see "0 results" and no reason.
            messages.info(
                request,
                f"“{search_term.strip()}” is not a whole address, so the search finds nothing. "
                "Type the exact address (ada@example.com): part of an address would scan "
                "millions of rows.",
            )
        return queryset.filter(**{self.email_lookup: term}), False


if TYPE_CHECKING:  # the stubs make Paginator generic; at runtime it is not subscriptable
    _Paginator = Paginator[Any]
else:
    _Paginator = Paginator


class EstimatedCountPaginator(_Paginator):
    """Pagination without COUNT(*) over millions of rows.

    Asks PostgreSQL's planner how many rows the changelist query returns; only when it expects
    few does it count them exactly. A large table therefore paginates by an estimate (the page
    links are approximate at the far end), a filtered small result by its exact size.
    """

    exact_below = 20_000

    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        if connection.vendor != "postgresql" or not hasattr(queryset, "query"):
            return int(queryset.count())
        try:
            estimate = _planner_rows(queryset)
        except EmptyResultSet:  # .none(): a search that can match nothing has no SQL to plan
            return 0
        if estimate >= self.exact_below:
            return estimate
        return int(queryset.count())


def _planner_rows(queryset: Any) -> int:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class ChangelistDefer:
    """Leaves big columns the list never shows out of the changelist query (not the form's)."""

    changelist_defer: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> Any:
        # A mixin: get_queryset comes from the ModelAdmin it is mixed into, hence [misc].
        queryset = super().get_queryset(request)  # type: ignore[misc]
        match = request.resolver_match
        if self.changelist_defer and match and (match.url_name or "").endswith("_changelist"):
            queryset = queryset.defer(*self.changelist_defer)
        return queryset
