"""Seed lists: the saved addresses test messages can go to, kept by those who may send tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.models import SeedList
from campaigns.services.seeds import seed_addresses_parse

if TYPE_CHECKING:  # the stubs make ModelForm generic; at runtime it is not subscriptable
    _SeedListModelForm = forms.ModelForm[SeedList]
else:
    _SeedListModelForm = forms.ModelForm


class SeedListForm(_SeedListModelForm):
    class Meta:
        model = SeedList
        fields = ("name", "addresses")

    def clean_addresses(self) -> str:
        """Every line an address (each bad line named); stored one per line, without repeats."""
        return "\n".join(seed_addresses_parse(self.cleaned_data.get("addresses") or ""))


@admin.register(SeedList)
class SeedListAdmin(ModelAdmin):
    """The saved addresses test messages can go to; kept by those who may send tests."""

    form = SeedListForm
    list_display = ("name", "size", "updated_at")
    search_fields = ("name",)

    @display(description="Addresses")
    def size(self, obj: SeedList) -> int:
        return len(obj.address_list)

    def _may_test(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("campaigns.send_test_campaign"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_test(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_test(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_test(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_test(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_test(request)

    def save_model(self, request: HttpRequest, obj: SeedList, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
