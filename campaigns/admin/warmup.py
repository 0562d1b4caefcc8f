"""Warm-up plans (the daily limits per mailbox provider) and the domains and channels on them.

The plan editor takes the limits as numbers separated by commas or spaces and says which day
is wrong; the warm-up list shows where each warm-up stands today: day N of M, today's limit
and what each provider received today (the counts the pacer keeps in Redis).
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.models import Warmup, WarmupPlan
from campaigns.services.pacing import Provider
from campaigns.services.pacing.warmup import (
    local_today,
    plan_limits_clean,
    warmup_day,
    warmup_limit,
    warmup_sent_today,
)

LIMITS_HELP = (
    "Messages per mailbox provider per day, day 1 first, separated by commas or spaces "
    "(e.g. 50, 100, 200, 400). Each day allows at least as much as the day before. After "
    "the last day the warm-up is over and no warm-up limit applies."
)


class LimitsField(forms.Field):
    """A list of whole numbers typed as text ("50, 100, 200")."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[int]:
        text = str(value or "").strip().strip("[]")
        items: list[Any] = []
        for day, part in enumerate(re.split(r"[\s,;]+", text), start=1):
            if not part:
                continue
            try:
                items.append(int(part.replace("_", "")))
            except ValueError:
                raise ValidationError(f"Day {day}: {part!r} is not a whole number.") from None
        return plan_limits_clean(items)


class WarmupPlanForm(forms.ModelForm):  # type: ignore[type-arg]
    daily_limits = LimitsField(widget=forms.Textarea(attrs={"rows": 4}), help_text=LIMITS_HELP)

    class Meta:
        model = WarmupPlan
        fields = ["name", "daily_limits", "description"]


@admin.register(WarmupPlan)
class WarmupPlanAdmin(ModelAdmin):
    form = WarmupPlanForm
    list_display = ["name", "days", "first_day", "last_day", "in_use"]
    search_fields = ["name"]

    @display(description="Days")
    def days(self, obj: WarmupPlan) -> int:
        return len(obj.daily_limits)

    @display(description="Day 1")
    def first_day(self, obj: WarmupPlan) -> str:
        return f"{obj.daily_limits[0]:,} per provider" if obj.daily_limits else "—"

    @display(description="Last day")
    def last_day(self, obj: WarmupPlan) -> str:
        return f"{obj.daily_limits[-1]:,} per provider" if obj.daily_limits else "—"

    @display(description="Active warm-ups")
    def in_use(self, obj: WarmupPlan) -> int:
        return obj.warmups.filter(active=True).count()


class WarmupForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Warmup
        fields = ["target_kind", "target", "plan", "started_on", "active"]
        help_texts = {
            "target": "A sending domain (the From address's domain, e.g. news.example.com) or "
            "a channel's name.",
            "started_on": "Day 1 of the plan. The plan moves to the next day at midnight "
            "(the site's time zone).",
        }

    def clean_target(self) -> str:
        target = str(self.cleaned_data["target"]).strip()
        if self.cleaned_data.get("target_kind") == Warmup.Target.DOMAIN:
            target = target.lower().lstrip("@")
        return target

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if data.get("active") and data.get("target"):
            clash = Warmup.objects.filter(
                target_kind=data.get("target_kind"), target=data["target"], active=True
            ).exclude(pk=self.instance.pk)
            if clash.exists():
                raise ValidationError("This target is already on an active warm-up.")
        return data


@admin.register(Warmup)
class WarmupAdmin(ModelAdmin):
    form = WarmupForm
    list_display = ["__str__", "plan", "progress", "limit_today", "sent_today", "active"]
    list_filter = ["active", "target_kind", "plan"]
    search_fields = ["target"]
    list_select_related = ["plan"]
    readonly_fields = ["created_by", "created_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        initial.setdefault("started_on", local_today(timezone.now()))
        if (plan := WarmupPlan.objects.order_by("pk").first()) is not None:
            initial.setdefault("plan", plan.pk)
        return initial

    def save_model(self, request: HttpRequest, obj: Warmup, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    @display(description="Progress")
    def progress(self, obj: Warmup) -> str:
        today = local_today(timezone.now())
        total = len(obj.plan.daily_limits)
        if today < obj.started_on:
            return f"starts {obj.started_on:%Y-%m-%d}"
        day = warmup_day(obj, today=today) + 1
        return f"day {day} of {total}" if day <= total else f"finished ({total} days)"

    @display(description="Limit today")
    def limit_today(self, obj: Warmup) -> str:
        limit = warmup_limit(obj, today=local_today(timezone.now()))
        return "none" if limit is None or not obj.active else f"{limit:,} per provider"

    @display(description="Sent today")
    def sent_today(self, obj: Warmup) -> str:
        try:
            sent = warmup_sent_today(obj)
        except Exception:  # Redis out: the counts are unknown, the page still shows
            return "unknown (Redis unavailable)"
        shown = [(str(p.label), n) for p, n in sent.items() if n or p is not Provider.OTHER]
        return format_html(
            '<span data-warmup-sent="{}">{}</span>',
            obj.pk,
            format_html_join(" · ", "{}: {}", shown),
        )
