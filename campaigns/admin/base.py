"""Small helpers shared by the admin modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from campaigns.services.delivery import IllegalTransition


def admin_url(obj: Any, view: str = "change") -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def link(obj: Any, text: str | None = None) -> str:
    if obj is None:
        return "—"
    return format_html('<a href="{}">{}</a>', admin_url(obj), text or str(obj))


def run_service(
    request: HttpRequest, call: Callable[[], Any], *, success: str, redirect_to: str
) -> HttpResponse:
    """Runs one service call, turning its refusals into clear admin messages."""
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
