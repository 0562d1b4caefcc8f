"""The campaign form: what staff compose, with the labels and hints in their words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
)

from campaigns.admin.body_editor import BodyEditorWidget
from campaigns.models import Campaign, Layout
from campaigns.services import campaigns as campaign_services
from campaigns.services.channels import channel_default, channel_names
from campaigns.services.scheduling import WEEKDAYS

if TYPE_CHECKING:  # the stubs make ModelForm generic; at runtime it is not subscriptable
    _CampaignModelForm = forms.ModelForm[Campaign]
else:
    _CampaignModelForm = forms.ModelForm


# What staff compose, in the order the form shows it.
MESSAGE_FIELDS = ("name", "from_email", "reply_to", "subject", "preheader")
BODY_FIELDS = ("body_format", "body", "layout")
TEXT_AND_WEB_FIELDS = ("text_body", "web_archive")
COMPOSE_FIELDS = (*MESSAGE_FIELDS, *BODY_FIELDS, *TEXT_AND_WEB_FIELDS)

# The campaign page's tabs, each introduced for someone who has never written HTML.
CONTENT_FIELDSETS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "Message",
        {
            "classes": ["tab"],
            "description": "Who the message comes from and what the inbox shows before it "
            "is opened: the subject and the preview text beside it.",
            "fields": MESSAGE_FIELDS,
        },
    ),
    (
        "Content",
        {
            "classes": ["tab"],
            "description": "What the message says. Write it in the editor (rich text), or in "
            "Markdown or HTML if you prefer; switching keeps what you wrote. The layout adds "
            "the logo, colours and the footer with the unsubscribe link. The preview below "
            "shows it as recipients will see it.",
            "fields": BODY_FIELDS,
        },
    ),
    (
        "Text & web version",
        {
            "classes": ["tab"],
            "description": "Every message also carries a plain-text version, for mail apps "
            "that show no formatting; it is written for you from the content unless you write "
            "your own. Each message links to a web version of itself.",
            "fields": TEXT_AND_WEB_FIELDS,
        },
    ),
)


class CampaignForm(_CampaignModelForm):
    class Meta:
        model = Campaign
        fields = (
            *COMPOSE_FIELDS,
            "audiences",
            "rate_limit_per_minute",
            "channel",
            *campaign_services.SCHEDULE_FIELDS,
        )
        # Admin help text is rendered as HTML: the model's "<team@example.com>" would vanish.
        help_texts = {
            "from_email": "A bare address, or a display name and address: "
            "Team &lt;team@example.com&gt;.",
            "preheader": "The preview text most inboxes show after the subject. Keep it under "
            "about 90 characters; personalisation tags work here too.",
            "body_format": "How you write the body: rich text in the editor, Markdown, or "
            "HTML for experts. Changing it converts what you have written.",
            "body": "Personalise with tags such as {{ recipient.first_name }}; they work in "
            "every format, links included. In rich text and Markdown, what email clients refuse "
            "(scripts, forms, pasted styling) is left out of the message and the save says "
            "what; HTML is sent as written.",
            "layout": "The frame around the content: logo, colours and the footer with your "
            "legal address and the unsubscribe link. No layout sends the body as it is.",
            "text_body": "Leave blank to generate it from the content (recommended). Write "
            "your own only to replace the generated one.",
            "web_archive": "Also list this campaign on the public archive page. Personal "
            "details are left out there.",
        }
        labels = {
            "body_format": "Body format",
            "preheader": "Preview text (preheader)",
            "text_body": "Plain-text version",
            "web_archive": "Publish to the public archive",
        }
        widgets = {
            "body": BodyEditorWidget,
            "text_body": UnfoldAdminTextareaWidget(attrs={"class": "opsdash-source", "rows": 8}),
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
        self._body_editor_setup()

    def _body_editor_setup(self) -> None:
        """Opens the editor in the format being composed; a new campaign starts in rich text
        inside the default layout."""
        if "body" not in self.fields:
            return
        if self.instance.pk is None and not self.is_bound:
            default = Layout.objects.filter(is_default=True).values_list("pk", flat=True).first()
            self.initial.setdefault("layout", default)
        layout_field = self.fields.get("layout")
        if isinstance(layout_field, forms.ModelChoiceField):
            layout_field.empty_label = "No layout (send the body as it is)"
        posted = self.data.get(self.add_prefix("body_format")) if self.is_bound else None
        chosen = posted or self.initial.get("body_format") or self.instance.body_format
        if chosen not in Campaign.BodyFormat.values:
            chosen = Campaign.BodyFormat.RICHTEXT
        widget = self.fields["body"].widget
        if isinstance(widget, BodyEditorWidget):
            widget.body_format = str(chosen)

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
