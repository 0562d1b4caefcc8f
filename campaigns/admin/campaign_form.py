"""The campaign form: what staff compose, with the labels and hints in their words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminSelectWidget

from campaigns.models import Campaign
from campaigns.services import campaigns as campaign_services
from campaigns.services.channels import channel_default, channel_names
from campaigns.services.scheduling import WEEKDAYS

if TYPE_CHECKING:  # the stubs make ModelForm generic; at runtime it is not subscriptable
    _CampaignModelForm = forms.ModelForm[Campaign]
else:
    _CampaignModelForm = forms.ModelForm


class CampaignForm(_CampaignModelForm):
    class Meta:
        model = Campaign
        fields = (
            *campaign_services.CONTENT_FIELDS,
            "audiences",
            "rate_limit_per_minute",
            "channel",
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Said here, not on the model: the zone is a setting, and a migration would freeze it.
        zone = settings.TIME_ZONE
        hints = {
            "scheduled_at": f"The date and time of the one send. Times are in {zone}.",
            "schedule_time": "The time of day it goes out, in the time zone below.",
            "schedule_timezone": "The time zone of the time above, e.g. Europe/London.",
        }
        for name, hint in hints.items():
            if name in self.fields:
                self.fields[name].help_text = hint
        if "channel" in self.fields:
            self.fields["channel"] = _channel_field()

    def _post_clean(self) -> None:
        # The stubs omit BaseModelForm._post_clean (model validation), hence [misc].
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            # A one-off time already passed is refused only when this form sets it.
            sets_time = {"schedule_kind", "scheduled_at"}.intersection(self.changed_data)
            past_ok = self.instance.pk is not None and not sets_time
            campaign_services.campaign_check(campaign=self.instance, past_ok=past_ok)
        except ValidationError as exc:
            self.add_error(None, exc)
        # The page may have been drawn before a send started: say why the edit cannot be saved.
        if self.instance.pk is not None and (
            refusal := campaign_services.campaign_edit_refusal(
                status=self.instance.status, changed=self.changed_data
            )
        ):
            self.add_error(None, refusal)


def _channel_field() -> forms.ChoiceField:
    """The configured channels (read when the form is drawn: they are settings, not data).

    A campaign naming a channel since removed fails validation here, as its launch would."""
    default = channel_default()
    return forms.ChoiceField(
        label="Sending channel",
        required=False,
        choices=[("", f"Default ({default})"), *((name, name) for name in channel_names())],
        widget=UnfoldAdminSelectWidget,
        help_text="How its messages leave: the SMTP relay or an email service provider "
        "(OPSDASH_CHANNELS). Empty: the default channel.",
    )
