"""The opsdash data model.

The Delivery row, not the Celery message, is the truth about who got what: one row per
(send, recipient), claimed by a batch task, and written as soon as its outcome is known.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator, URLValidator
from django.db import models
from django.db.models import Q
from django.db.models.expressions import Func
from django.utils import timezone


class EmailDomain(Func):
    """The domain of a stored address (everything after its last "@"), as SQL.

    The recipients' domain index is built on this expression and the admin's domain search
    filters on it, so both compile to the same text and the planner matches them. The SQL is
    literal (no bound parameters) for that reason: SQLite matches an index expression only
    when the query spells it the same way.
    """

    template = "SPLIT_PART(%(expressions)s, '@', -1)"
    output_field = models.CharField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # The embedded profile's tables are small; the first "@" is the domain's there.
        template = "SUBSTR(%(expressions)s, INSTR(%(expressions)s, '@') + 1)"
        return self.as_sql(compiler, connection, template=template, **extra)


class Recipient(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    # Normalised (lower-cased, IDNA domain) by services.audiences.normalise_email. Unique through
    # Meta.constraints rather than unique=True, which on PostgreSQL adds a second, LIKE-only
    # index that nothing queries and every bulk import has to maintain.
    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status"], name="recipient_status_idx"),
            # "Everyone at example.com" in the admin's search, without reading a million rows.
            models.Index(EmailDomain("email"), name="recipient_email_domain_idx"),
        ]
        constraints = [models.UniqueConstraint(fields=["email"], name="recipient_email_unique")]
        permissions = [
            ("resubscribe_recipient", "Can re-subscribe opted-out or suppressed recipients"),
            ("change_recipient_status", "Can change a recipient's consent status"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Audience(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    # Like Delivery's keys, these are kept by Django (deleting a recipient or an audience cascades
    # through the ORM) rather than by per-row database checks, which cost a million-row import
    # an index probe per key per row. Every writer goes through the ORM or the import's
    # set-based upsert, which only inserts ids it has just read from the recipient table.
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="subscriptions", db_constraint=False
    )
    # No index of its own: subscription_unique and subscription_aud_status_idx lead with it.
    audience = models.ForeignKey(
        Audience,
        on_delete=models.CASCADE,
        related_name="subscriptions",
        db_index=False,
        db_constraint=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    # Provenance only, so no database constraint: checking the same ImportJob row once per
    # subscription costs a million-row import ~4 s. Deleting a job through Django still nulls it.
    source_import = models.ForeignKey(
        "ImportJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "recipient"], name="subscription_unique")
        ]
        indexes = [models.Index(fields=["audience", "status"], name="subscription_aud_status_idx")]

    def __str__(self) -> str:
        return f"{self.recipient_id} in {self.audience_id} ({self.status})"


class LayoutManager(models.Manager["Layout"]):
    def get_by_natural_key(self, name: str) -> Layout:
        """Fixtures name a layout (the demo campaign uses the shipped one) rather than its id."""
        return self.get(name=name)


class Layout(models.Model):
    """The frame a campaign's body is set in: header, footer, styles. A template in the locked
    campaign engine whose slot ``{{ content }}`` receives the body. A send freezes the compiled
    result (and this version number), so editing a layout never changes a launched send."""

    name = models.CharField(max_length=100, unique=True)
    html = models.TextField(
        "HTML",
        help_text="The frame, with {{ content }} exactly once where the body goes. Also: "
        "{{ preheader }}, {{ unsubscribe_url }}, {{ web_version_url }}, {{ campaign.name }}, "
        "{{ layout.logo_url }}, {{ layout.brand_color }}, {{ layout.legal_address }}, "
        "{{ layout.footer_text }}.",
    )
    # A URL, checked as URLField would; a CharField so forms never guess a missing scheme.
    logo_url = models.CharField(
        "Logo URL",
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["https", "http"])],
        help_text="An https:// address of the logo image; blank: the name in text.",
    )
    brand_color = models.CharField(
        "Brand colour",
        max_length=7,
        default="#1f6feb",
        validators=[RegexValidator(r"^#[0-9A-Fa-f]{6}$", "Write the colour as #RRGGBB.")],
    )
    legal_address = models.TextField(blank=True)
    footer_text = models.TextField(
        blank=True, help_text="The unsubscribe line. Blank: the default line."
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    is_default = models.BooleanField("Default for new campaigns", default=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = LayoutManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="layout_one_default"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class ScheduleKind(models.TextChoices):
        MANUAL = "manual", "Only when someone presses Send"
        ONCE = "once", "Once, at a date and time"
        DAILY = "daily", "Every day at a time"
        WEEKLY = "weekly", "Every week on a day at a time"
        MONTHLY = "monthly", "Every month on a day at a time"
        CRONTAB = "crontab", "Custom crontab"

    class BodyFormat(models.TextChoices):
        RICHTEXT = "richtext", "Rich text"
        MARKDOWN = "markdown", "Markdown"
        HTML = "html", "HTML"

    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=255)
    from_email = models.CharField(
        max_length=320, help_text="A bare address or a display name: Team <team@example.com>."
    )
    reply_to = models.EmailField(blank=True)
    body_format = models.CharField(
        "Format", max_length=16, choices=BodyFormat.choices, default=BodyFormat.RICHTEXT
    )
    body = models.TextField("Body", blank=True)
    text_body = models.TextField(
        "Text body", blank=True, help_text="Blank: generated from the body when it is sent."
    )
    layout = models.ForeignKey(
        Layout, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    preheader = models.CharField(
        "Preview text",
        max_length=255,
        blank=True,
        help_text="Shown after the subject in most inboxes; hidden in the message itself.",
    )
    web_archive = models.BooleanField("Publish to the public archive", default=False)
    audiences = models.ManyToManyField(Audience, related_name="campaigns", blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True
    )

    schedule_kind = models.CharField(
        "Occurrence",
        max_length=16,
        choices=ScheduleKind.choices,
        default=ScheduleKind.MANUAL,
        help_text="When this campaign goes out. “Only when someone presses Send” never sends "
        "on its own; “Once” sends a single time at the date and time you give; every day, "
        "week or month sends again at that time until it is unscheduled; a custom crontab "
        "is for rules the other choices cannot say.",
    )
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="For a one-off send.")
    schedule_time = models.TimeField(null=True, blank=True, help_text="For a recurring send.")
    schedule_weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="0 = Monday … 6 = Sunday, for weekly sends."
    )
    schedule_day = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Day of the month (1–28), for monthly sends."
    )
    schedule_crontab = models.CharField(
        max_length=120, blank=True, help_text="minute hour day-of-month month day-of-week"
    )
    schedule_timezone = models.CharField(max_length=64, default="UTC")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign",
        editable=False,
    )
    # The sending channel (settings.OPSDASH_CHANNELS): empty means the default channel.
    channel = models.CharField(max_length=32, blank=True, default="")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Optional cap for this campaign, on top of the SMTP limit."
    )
    # An approver's decision to send although a pre-flight check that blocks bulk sending
    # failed (services/preflight.py); void once the content or the checks' findings change.
    preflight_override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    preflight_override_at = models.DateTimeField(null=True, blank=True)
    preflight_override_reason = models.CharField(max_length=500, blank=True)
    # What the overridden findings were (their codes), so a new failure is not covered by it.
    preflight_override_codes = models.JSONField(default=list, blank=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # When content, audiences or schedule last changed: an approval older than this is void.
    edited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("approve_campaign", "Can approve campaigns"),
            ("send_campaign", "Can schedule, send, pause, resume and cancel campaigns"),
            ("send_test_campaign", "Can send test messages of a campaign"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_recurring(self) -> bool:
        return self.schedule_kind in {
            self.ScheduleKind.DAILY,
            self.ScheduleKind.WEEKLY,
            self.ScheduleKind.MONTHLY,
            self.ScheduleKind.CRONTAB,
        }


class SeedList(models.Model):
    """A saved list of addresses test messages go to: the team's inboxes, or one test account
    per mail provider, so a test shows how the campaign lands in each."""

    name = models.CharField(max_length=200, unique=True)
    addresses = models.TextField(help_text="One email address per line.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "seed list"

    def __str__(self) -> str:
        return self.name

    @property
    def address_list(self) -> list[str]:
        return [line.strip() for line in self.addresses.splitlines() if line.strip()]


class Service(models.TextChoices):
    """The services a send depends on, named when one of them is out."""

    REDIS = "redis", "Redis"
    DATABASE = "database", "the database"
    BROKER = "broker", "the broker"
    # Not a service that is out: the sending domain's warm-up plan allows no more today.
    WARMUP = "warmup", "the warm-up quota"


class Guardrail(models.TextChoices):
    """Why a send paused itself (services/guardrails.py)."""

    HARD_BOUNCES = "hard_bounces", "Hard-bounce rate"
    COMPLAINTS = "complaints", "Complaint rate"
    DEFERRALS = "deferrals", "Deferrals from one provider"


class Send(models.Model):
    """One execution of a campaign; a recurring campaign has one per occurrence."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Send now"
        SCHEDULE = "schedule", "Schedule"

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="sends")
    occurrence_key = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    stalled_reason = models.CharField(max_length=255, blank=True)
    # A service the send's batches are waiting for (Redis, the database), and since when; empty
    # while nothing is wrong. Written by the delivery engine, shown instead of "running".
    # The exact content this send delivers (subject, from, reply-to, bodies), frozen at launch:
    # editing the campaign afterwards never changes it, and it answers "what did they get?".
    content = models.JSONField(default=dict, blank=True)
    waiting_for = models.CharField(max_length=16, choices=Service.choices, blank=True, default="")
    waiting_since = models.DateTimeField(null=True, blank=True)
    # The latest time a batch of this send is due to try again (backoff, rate limit): until
    # then the watchdog does not take queued rows for orphans.
    retry_due_at = models.DateTimeField(null=True, blank=True)
    # The lowest and highest id of the send's Delivery rows, known at launch. The send's page
    # reads its newest rows by walking the primary key down from the highest: without the bound
    # it would first walk past every row of the sends launched after it.
    delivery_id_low = models.BigIntegerField(null=True, blank=True, editable=False)
    delivery_id_high = models.BigIntegerField(null=True, blank=True, editable=False)
    # The channel the send delivers through, resolved at launch (never the empty default).
    channel = models.CharField(max_length=32, blank=True, default="")
    # What happened after the messages left, counted by the event applier once per delivery
    # (services/events): pages read these, never the event table.
    delivered_count = models.PositiveIntegerField(default=0)
    soft_bounced_count = models.PositiveIntegerField(default=0)
    bounced_count = models.PositiveIntegerField(default=0)
    complained_count = models.PositiveIntegerField(default=0)
    unsubscribed_count = models.PositiveIntegerField(default=0)
    opened_count = models.PositiveIntegerField(default=0)
    clicked_count = models.PositiveIntegerField(default=0)
    # Why the send is paused, in words staff read on the send page and the dashboard; set by a
    # guardrail (``guardrail`` names which) or by a person.
    paused_reason = models.CharField(max_length=500, blank=True)
    guardrail = models.CharField(max_length=16, choices=Guardrail.choices, blank=True, default="")
    guardrail_at = models.DateTimeField(null=True, blank=True)
    # What the guardrails measured and what an approver accepted when resuming (the counts at
    # that moment, so the same rate does not pause the send again at once).
    guardrail_state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "occurrence_key"], name="send_unique_occurrence"
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.occurrence_key}"

    @property
    def done_count(self) -> int:
        return self.sent_count + self.failed_count + self.skipped_count


class Delivery(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class SkipReason(models.TextChoices):
        """Why a row was skipped, worded to follow a count ("174 cancelled before sending")."""

        NONE = "", "no reason recorded"
        CANCELLED = "cancelled", "cancelled before sending"
        RECIPIENT_DELETED = "recipient_deleted", "recipient deleted during the send"
        UNSUBSCRIBED = "unsubscribed", "unsubscribed during the send"
        BOUNCED = "bounced", "address marked bounced during the send"
        COMPLAINED = "complained", "recipient complained during the send"

    # Every index here is written for each of a send's million rows at launch, and again each
    # time a row changes status (claim, outcome): the send's own index is left to the composite
    # ones below that start with it, and task_id is not indexed (nothing looks rows up by it).
    # Rows in ``sending`` are found through their send (the reaper asks per unfinished send),
    # and sent_at has none: nothing filters by it, and the list's sort puts unsent rows first,
    # which an index leaving them out cannot serve.
    # No database foreign keys either: PostgreSQL would check both for each of the million rows
    # when the launch commits, which took longer than the insert. The launch's INSERT ... SELECT
    # only ever writes the send it just created and recipients it just read, deletes cascade
    # through the ORM, and a batch skips a row whose recipient has gone.
    send = models.ForeignKey(
        Send,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    recipient = models.ForeignKey(
        Recipient,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Set with the status in the same UPDATE when a row is skipped. A database default too:
    # the launch's INSERT ... SELECT names its columns and leaves this one out.
    skip_reason = models.CharField(
        max_length=24, choices=SkipReason.choices, blank=True, default="", db_default=""
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    smtp_response = models.CharField(max_length=512, blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    # The id the ESP gave the message (empty on the SMTP channel, whose events carry our
    # Message-ID or the VERP token instead). Webhook events find their delivery by it.
    esp_message_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    # When each kind of event was first applied to this row: set once, so the same event twice,
    # or a late one out of order, never counts twice on the Send.
    delivered_at = models.DateTimeField(null=True, blank=True)
    soft_bounced_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # Recipient first: the same index serves "this recipient's deliveries", so the
            # recipient foreign key needs no index of its own.
            models.UniqueConstraint(fields=["recipient", "send"], name="delivery_unique_recipient")
        ]
        indexes = [
            # With the id last, a batch's claim (its send, queued or sending, its id range)
            # is one tight range scan, whatever the planner thinks of a send launched since
            # the last ANALYZE; counts by status and the queued rows of a send use its prefix.
            models.Index(fields=["send", "status", "id"], name="delivery_send_status_id_idx"),
            # The dashboard's outcomes-per-hour chart reads the last 24 h by this column.
            # Partial: a queued row (no time yet) costs nothing in it at launch.
            models.Index(
                fields=["updated_at"],
                name="delivery_updated_at_idx",
                condition=Q(updated_at__isnull=False),
            ),
            # Partial: empty at launch and on the SMTP channel, so a launch never writes it.
            models.Index(
                fields=["esp_message_id"],
                name="delivery_esp_message_id_idx",
                condition=~Q(esp_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} in send {self.send_id}: {self.status}"

    @property
    def message_id(self) -> str:
        """Deterministic, so a re-sent message is recognisable as the same one."""
        domain = settings.OPSDASH_MESSAGE_ID_DOMAIN
        return f"<send-{self.send_id}.rcpt-{self.recipient_id}@{domain}>"


class TaskLink(models.Model):
    """Ties a Celery task id (and so its TaskResult row) to the campaign and send it served."""

    class Kind(models.TextChoices):
        LAUNCH = "launch", "Launch"
        BATCH = "batch", "Delivery batch"
        TEST = "test", "Test message"
        IMPORT = "import", "Import"

    task_id = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="task_links"
    )
    send = models.ForeignKey(
        Send, null=True, blank=True, on_delete=models.CASCADE, related_name="task_links"
    )
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.CASCADE, related_name="task_links"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.task_id}"


class ImportJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # Uploaded but never started within OPSDASH_IMPORT_UNSTARTED_HOURS: the retention job
        # deleted its file. Final, and never counted as running.
        ABANDONED = "abandoned", "Abandoned — never started"

    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255, blank=True)
    audience = models.ForeignKey(
        Audience, null=True, blank=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    mapping = models.JSONField(default=dict, blank=True)
    resubscribe = models.BooleanField(
        default=False, help_text="Re-activate unsubscribed or bounced addresses found in the file."
    )
    all_or_nothing = models.BooleanField(
        default=False, help_text="Write nothing if any row is invalid."
    )
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0)
    error_report = models.FileField(upload_to="import-reports/%Y/%m/", blank=True)
    message = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        # Staff call them imports (the sidebar, the dashboard): the list and its pages too.
        verbose_name = "import"
        verbose_name_plural = "imports"

    def __str__(self) -> str:
        return f"Import {self.pk}: {self.original_name or self.file.name}"


class AuditEntry(models.Model):
    """Who did what to which campaign, send or import, and when: never edited after writing."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        EDITED = "edited", "Edited"
        APPROVED = "approved", "Approved"
        APPROVAL_CLEARED = "approval_cleared", "Approval cleared"
        SEND_REFUSED = "send_refused", "Send refused"
        PREFLIGHT_OVERRIDDEN = "preflight_overridden", "Pre-flight checks overridden"
        PREFLIGHT_OVERRIDE_CLEARED = "preflight_override_cleared", "Pre-flight override cleared"
        SCHEDULED = "scheduled", "Scheduled"
        UNSCHEDULED = "unscheduled", "Unscheduled"
        SENT = "sent", "Sent"
        TEST_SENT = "test_sent", "Test message sent"
        PAUSED = "paused", "Paused"
        RESUMED = "resumed", "Resumed"
        CANCELLED = "cancelled", "Cancelled"
        DELETED = "deleted", "Deleted"
        IMPORT_STARTED = "import_started", "Import started"
        IMPORT_FINISHED = "import_finished", "Import finished"
        IMPORT_CANCELLED = "import_cancelled", "Import cancelled"
        INTERRUPTED = "interrupted", "Interrupted"
        RECOVERED = "recovered", "Recovered"
        RESUBSCRIBED = "resubscribed", "Opted-out recipients re-subscribed"
        RECIPIENT_STATUS_CHANGED = "recipient_status_changed", "Recipient status changed"
        SUPPRESSED = "suppressed", "Address suppressed"
        SUPPRESSION_LIFTED = "suppression_lifted", "Suppression lifted"

    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    send = models.ForeignKey(
        Send, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    import_job = models.ForeignKey(
        ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # The person a consent change was about: their page lists these entries as its history.
    recipient = models.ForeignKey(
        Recipient, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    layout = models.ForeignKey(
        Layout, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        """ "Sent by Dana", as the trail shows it (the page title and breadcrumb use this)."""
        from campaigns.selectors.audit import audit_title  # the selectors import this module

        return audit_title(self)


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker or beat process, written by the process itself.

    The dashboard reads these instead of asking the broker, so it reports workers the same way
    on every profile (the embedded broker cannot broadcast a ping). One row per process name,
    upserted every OPSDASH_HEARTBEAT_SECONDS; rows silent past the retention are purged.
    """

    class Kind(models.TextChoices):
        WORKER = "worker", "Worker"
        BEAT = "beat", "Scheduler (beat)"

    hostname = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.WORKER)
    queues = models.JSONField(default=list, blank=True)
    pid = models.PositiveIntegerField(default=0)
    concurrency = models.PositiveIntegerField(default=0)
    active_tasks = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["kind", "hostname"]

    def __str__(self) -> str:
        return self.hostname


class DeliveryEvent(models.Model):
    """Something that happened to a message after it left: one row per event, as received.

    Webhooks and the bounce receiver only store these (deduplicated on ``(source, event_key)``);
    a worker applies them in bulk (``applied_at``), so a burst never slows the sender's request.
    """

    class Kind(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        DEFERRED = "deferred", "Deferred"
        SOFT_BOUNCED = "soft_bounced", "Soft bounce"
        BOUNCED = "bounced", "Hard bounce"
        REJECTED = "rejected", "Rejected"
        COMPLAINED = "complained", "Complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        OTHER = "other", "Other"

    # Where it came from: an ESP's webhook ("postmark", "amazon_ses", ...) or "bounce_mail".
    source = models.CharField(max_length=32)
    # The provider's own event id, or a digest of the event's content when it has none.
    event_key = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The ESP's message id, or our Message-ID for bounce mail; empty when the event has neither.
    message_id = models.CharField(max_length=255, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    # Resolved by the applier (or by the bounce receiver from the VERP token); no constraint,
    # as on Delivery: the event outlives a purged send.
    delivery_id = models.BigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    description = models.TextField(blank=True, default="")
    mta_response = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_key"], name="event_unique_key")
        ]
        indexes = [
            # The applier's queue: only the rows not applied yet are in it.
            models.Index(fields=["id"], name="event_unapplied_idx", condition=Q(applied_at=None)),
            models.Index(fields=["delivery_id"], name="event_delivery_idx"),
            models.Index(fields=["email"], name="event_email_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.email or self.message_id}"


class Suppression(models.Model):
    """An address opsdash never mails again, with why: kept even for an unknown address."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
        COMPLAINT = "complaint", "Spam complaint"
        ESP_UNSUBSCRIBE = "esp_unsubscribe", "Unsubscribed at the ESP"
        REJECTED = "rejected", "Refused by the server (no such mailbox)"
        MANUAL = "manual", "Added by staff"

    email = models.CharField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True, default="")
    source = models.CharField(max_length=32, blank=True, default="")
    event = models.ForeignKey(
        DeliveryEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipient = models.ForeignKey(
        Recipient, null=True, blank=True, on_delete=models.SET_NULL, related_name="suppressions"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["reason", "created_at"], name="suppression_reason_idx")]

    def __str__(self) -> str:
        return self.email


class ChannelHealth(models.Model):
    """What a provider's webhooks (or the bounce receiver) last did, one row per source."""

    source = models.CharField(max_length=32, unique=True)
    events_received = models.PositiveBigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    auth_failures = models.PositiveBigIntegerField(default=0)
    last_auth_failure_at = models.DateTimeField(null=True, blank=True)
    last_auth_failure = models.CharField(max_length=255, blank=True, default="")
    rejected_payloads = models.PositiveBigIntegerField(default=0)
    last_rejected_at = models.DateTimeField(null=True, blank=True)
    last_rejected = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["source"]
        verbose_name_plural = "channel health"

    def __str__(self) -> str:
        return self.source


class BounceMessage(models.Model):
    """A message that reached the bounce receiver: kept whole when no parser understood it."""

    class Status(models.TextChoices):
        PARSED = "parsed", "Understood"
        NEEDS_REVIEW = "needs_review", "Needs a person"
        DISMISSED = "dismissed", "Dismissed"

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    mail_from = models.CharField(max_length=512, blank=True, default="")
    rcpt_to = models.CharField(max_length=512, blank=True, default="")
    subject = models.CharField(max_length=512, blank=True, default="")
    raw = models.BinaryField()
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    problem = models.TextField(blank=True, default="")
    events_found = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.subject or f"bounce message {self.pk}"


class WarmupPlan(models.Model):
    """How many messages a new sending domain or channel may send per mailbox provider per day.

    ``daily_limits[n]`` is the limit on day n + 1 of the warm-up; after the last day the plan
    is finished and no warm-up limit applies.
    """

    name = models.CharField(max_length=100, unique=True)
    daily_limits = models.JSONField(default=list)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "warm-up plan"

    def __str__(self) -> str:
        return self.name


class Warmup(models.Model):
    """A sending domain or a channel on a warm-up plan, from a start date."""

    class Target(models.TextChoices):
        DOMAIN = "domain", "Sending domain"
        CHANNEL = "channel", "Channel"

    target_kind = models.CharField(max_length=16, choices=Target.choices, default=Target.DOMAIN)
    # A From domain (lower case) or a channel name (settings.OPSDASH_CHANNELS).
    target = models.CharField(max_length=255)
    plan = models.ForeignKey(WarmupPlan, on_delete=models.PROTECT, related_name="warmups")
    started_on = models.DateField()
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["target_kind", "target"]
        verbose_name = "warm-up"
        constraints = [
            models.UniqueConstraint(
                fields=["target_kind", "target"],
                condition=models.Q(active=True),
                name="warmup_one_active_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_target_kind_display()} {self.target}"
