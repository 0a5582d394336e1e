"""The mirror of a platform's contacts, sessions and messages, and their timelines.

Unique constraints, not check-then-insert, keep duplicates out: one identity per platform
contact id, one session per platform session id, one message per platform message id, one
receipt per (message id, status), one timeline entry per platform event.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from integrations.base import MEDIUM_LABELS, DeliveryStatus, Medium, MessageType, SessionEventKind

MEDIUM_CHOICES = [(m.value, MEDIUM_LABELS[m]) for m in Medium]


class Contact(models.Model):
    """A customer, possibly reachable on several channels (one identity per channel)."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.PROTECT, related_name="contacts"
    )
    name = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=255, blank=True)
    phone = models.CharField(max_length=64, blank=True, db_index=True)
    language = models.CharField(max_length=16, blank=True, help_text="Locale, e.g. en_US.")
    # "Unique Id assigned to Contact by Core Business Application" (XMS businessProfile).
    business_profile_id = models.CharField(max_length=255, blank=True)
    profile = models.JSONField(default=dict, blank=True, help_text="Profile fields from callbacks.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["account", "phone"], name="contact_account_phone_idx")]

    def __str__(self) -> str:
        return self.name or self.phone or self.email or f"Contact {self.pk}"


class ContactIdentity(models.Model):
    """How one platform knows a contact on one channel (XMS `contactId`)."""

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.PROTECT, related_name="identities"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    channel = models.ForeignKey(
        "integrations.Channel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="identities",
    )
    medium = models.CharField(max_length=20, choices=MEDIUM_CHOICES)
    # Platform ids are kept whole (text), up to integrations.payload.KEY_MAX_CHARS.
    external_id = models.TextField("platform id", help_text="The platform's contact id.")
    address = models.CharField(max_length=255, blank=True, help_text="Phone/handle on the medium.")
    profile_name = models.CharField(max_length=255, blank=True)
    # When the customer opted out (a keyword such as STOP, an unsubscription the platform
    # reports). Nothing may be sent to them until they write again: a message of theirs
    # after this moment opts them back in (`inbox.selectors.contacts.identity_opt_out`).
    opted_out_at = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "contact identities"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"], name="contactidentity_account_external_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_medium_display()} {self.address or self.external_id}"


class Session(models.Model):
    """One platform session: a customer on one channel, for one episode, with an owner."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.PROTECT, related_name="sessions"
    )
    channel = models.ForeignKey(
        "integrations.Channel", on_delete=models.PROTECT, related_name="sessions"
    )
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="sessions")
    identity = models.ForeignKey(
        ContactIdentity, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    external_id = models.TextField("platform id", blank=True, help_text="Platform sessionId.")
    routing_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    # Ownership as the platform reports it.
    platform_agent = models.CharField(max_length=255, blank=True)
    platform_dept = models.CharField(max_length=255, blank=True)
    platform_queue = models.CharField(max_length=255, blank=True)
    platform_bot = models.CharField(max_length=255, blank=True)
    platform_mode = models.CharField(max_length=64, blank=True)
    ticket_hash = models.CharField(max_length=255, blank=True)
    # Ownership inside Switchboard.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_sessions",
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    opened_at = models.DateTimeField()
    # The customer's last message: the 24-hour window is measured from here.
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(db_index=True)
    last_message = models.ForeignKey(
        "inbox.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    unread_count = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Agents' own tags; the contact panel shows the labels of all the contact's sessions.
    labels = models.ManyToManyField("inbox.Label", related_name="sessions", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_activity_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"],
                condition=~Q(external_id=""),
                name="session_account_external_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-last_activity_at"], name="session_status_activity"),
            models.Index(fields=["channel", "contact", "status"], name="session_channel_contact"),
            # The customer's last message on a channel (the messaging window), one probe a row.
            models.Index(
                fields=["channel", "contact", "last_inbound_at"],
                name="session_contact_last_inbound",
            ),
            # The queues routing suggests, read one index entry per queue.
            models.Index(
                fields=["platform_queue"],
                condition=~Q(platform_queue=""),
                name="session_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"Session {self.external_id or self.pk} ({self.get_status_display()})"


class Message(models.Model):
    """One message in a session, either direction, of any type."""

    class Direction(models.TextChoices):
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = DeliveryStatus.QUEUED.value, "Queued"
        SENDING = DeliveryStatus.SENDING.value, "Sending"
        # The platform may have the message, but neither its answer, a receipt nor its history
        # said so within the evidence window: shown as "may not have been delivered".
        UNCONFIRMED = "unconfirmed", "Unconfirmed"
        SENT = DeliveryStatus.SENT.value, "Sent"
        DELIVERED = DeliveryStatus.DELIVERED.value, "Delivered"
        READ = DeliveryStatus.READ.value, "Read"
        FAILED = DeliveryStatus.FAILED.value, "Failed"
        DELETED = DeliveryStatus.DELETED.value, "Deleted"

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.PROTECT, related_name="messages"
    )
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    type = models.CharField(max_length=20, choices=[(t.value, t.name.title()) for t in MessageType])
    raw_type = models.CharField(max_length=40, blank=True, help_text="The platform's own type.")
    body = models.TextField(blank=True)
    caption = models.TextField(blank=True)
    media_url = models.URLField(max_length=2000, blank=True)
    media_mime_type = models.CharField(max_length=255, blank=True)
    media_filename = models.CharField(max_length=255, blank=True)
    media_size = models.BigIntegerField(null=True, blank=True)
    media_sha256 = models.CharField(max_length=128, blank=True)
    media_external_id = models.CharField(max_length=255, blank=True)
    attachments = models.JSONField(default=list, blank=True, help_text="Further media, if any.")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    location_name = models.CharField(max_length=255, blank=True)
    location_address = models.CharField(max_length=500, blank=True)
    location_url = models.URLField(max_length=2000, blank=True)
    # The platform's ids: XMS `id` (service) and `messageIdExt` (channel, e.g. WhatsApp).
    external_id = models.TextField(blank=True)
    external_id_ext = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    sent_at = models.DateTimeField(help_text="When the sender sent it (platform time).")
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_title = models.TextField(blank=True)
    author_name = models.CharField(
        max_length=255,
        blank=True,
        db_default="",  # rows written by COPY (the benchmark's seed) need no value for it
        help_text="Who sent it on the platform itself (an agent there, a bot), if not from here.",
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Outbound only.
    idempotency_key = models.CharField(max_length=100, blank=True)
    template = models.ForeignKey(
        "integrations.Template",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    template_data = models.JSONField(default=dict, blank=True)
    buttons = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    # The platform did not answer a send it may have accepted (a read timeout).
    outcome_unknown = models.BooleanField(default=False)
    # When the first attempt was made: evidence of an ambiguous send is sought from then on,
    # however often the row is reclaimed.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    # A platform that pushes no receipts (Capability.RECEIPTS_FETCH) is asked where this send
    # is: next at this time (null: RECEIPTS_FETCH_BACKOFF_SECONDS[0] after it was accepted),
    # after `receipt_checks` looks that found nothing final.
    receipt_check_at = models.DateTimeField(null=True, blank=True)
    receipt_checks = models.PositiveSmallIntegerField(default=0, db_default=0)
    replaces = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replaced_by",
        help_text="The failed message this one re-sends (e.g. as a template).",
    )

    class Meta:
        ordering = ["sent_at", "id"]
        constraints = [
            # Inbound and outbound ids are kept apart: a platform could reuse an id across
            # directions, and a receipt only ever concerns an outbound message.
            models.UniqueConstraint(
                fields=["account", "direction", "external_id"],
                condition=~Q(external_id=""),
                name="message_account_direction_external_id_unique",
            ),
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="message_account_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["session", "sent_at", "id"], name="message_session_sent"),
            models.Index(
                fields=["account", "external_id_ext"],
                condition=~Q(external_id_ext=""),
                name="message_account_ext_idx",
            ),
            models.Index(
                fields=["status", "claimed_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="message_outbox_idx",
            ),
            # The replies still to settle, by conversation: what a drain claims and what a
            # reply waits behind (deliver.waiting_in_line), found without reading settled rows.
            models.Index(
                fields=["session", "id"],
                condition=Q(status__in=["queued", "sending"], direction="out"),
                name="message_unsettled_idx",
            ),
            # A drain's claim walks the unsettled replies oldest first and stops at its batch:
            # with this index that reads about a batch's worth of rows whatever the backlog.
            # Without it the planner, whose statistics lag behind a burst, sorted every
            # unsettled reply of the channel first (17 ms per claim behind 2,800 of them).
            models.Index(
                fields=["id"],
                condition=Q(status__in=["queued", "sending"], direction="out"),
                name="message_unsettled_order_idx",
            ),
            # Sends on their way whose receipts are asked for (`receipts_fetch`), by when.
            models.Index(
                fields=["account", "receipt_check_at", "accepted_at"],
                condition=Q(status__in=["sent", "delivered"], direction="out"),
                name="message_receipt_check_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.type} #{self.pk}"


class MessageCopy(models.Model):
    """A further copy of an outbound message the platform accepted (the customer got it twice).

    Kept so that the agent sees it ("delivered twice") and its receipts attach to something.
    """

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.CASCADE, related_name="+"
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="copies")
    external_id = models.TextField()
    external_id_ext = models.TextField(blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"], name="messagecopy_account_external_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"copy {self.external_id} of #{self.message_id}"


class MessageStatusChange(models.Model):
    """One step of an outbound message's delivery history."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="status_changes")
    status = models.CharField(max_length=20, choices=Message.Status.choices)
    occurred_at = models.DateTimeField()
    error_code = models.CharField(max_length=64, blank=True)
    error_title = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "status"], name="messagestatuschange_message_status_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class MessageReceipt(models.Model):
    """A delivery receipt as the platform sent it, kept even before its message is known."""

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.CASCADE, related_name="receipts"
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="receipts"
    )
    external_id = models.TextField()
    external_id_ext = models.TextField(blank=True)
    # Whose message it is: lets a receipt for an id we do not know settle an unconfirmed send.
    contact_external_id = models.TextField(blank=True)
    status = models.CharField(
        max_length=20, choices=[(s.value, s.name.title()) for s in DeliveryStatus]
    )
    occurred_at = models.DateTimeField()
    error_code = models.CharField(max_length=64, blank=True)
    error_title = models.TextField(blank=True)
    error_details = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id", "status"],
                name="messagereceipt_account_external_status_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account", "external_id_ext"],
                condition=~Q(external_id_ext=""),
                name="receipt_account_ext_idx",
            ),
            models.Index(
                fields=["account", "external_id"],
                condition=Q(message__isnull=True),
                name="receipt_orphan_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} for {self.external_id}"


class TimelineEntry(models.Model):
    """A line on a session's (or, lacking one, a contact's) timeline: routed, assigned, etc."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        ROUTED = SessionEventKind.ROUTED.value, "Routed"
        ASSIGNED = SessionEventKind.ASSIGNED.value, "Assigned"
        RESOLVED = SessionEventKind.RESOLVED.value, "Resolved"
        CLOSED = SessionEventKind.CLOSED.value, "Closed"
        REOPENED = "reopened", "Reopened"
        ACTION = "action", "Action"
        EVENT = SessionEventKind.OTHER.value, "Platform event"

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.CASCADE, related_name="timeline"
    )
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="timeline"
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, null=True, blank=True, related_name="timeline"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Stops a platform event delivered twice from appearing twice.
    dedupe_key = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name_plural = "timeline entries"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="timelineentry_account_dedupe_unique",
            ),
            models.CheckConstraint(
                condition=Q(session__isnull=False) | Q(contact__isnull=False),
                name="timelineentry_has_subject",
            ),
        ]
        indexes = [models.Index(fields=["session", "occurred_at"], name="timeline_session_time")]

    def __str__(self) -> str:
        return self.summary


class SessionAction(models.Model):
    """An agent's request the platform must carry out (route, resolve, close, language).

    The platform call runs in a worker; local state changes only once it succeeded, and a failure
    stays here, with its reason, for the agent to see.
    """

    class Kind(models.TextChoices):
        ROUTE = "route", "Route"
        RESOLVE = "resolve", "Resolve"
        CLOSE = "close", "Close"
        LANGUAGE = "language", "Set language"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "created_at"], name="sessionaction_state")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.session_id}: {self.get_state_display()}"


class Note(models.Model):
    """A private note agents leave on a session; it is never sent to the customer."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    body = models.TextField()
    # The composer's key: a note submitted twice is stored once.
    idempotency_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"], name="note_session_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="note_session_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"Note #{self.pk} on session {self.session_id}"


class CannedReply(models.Model):
    """A saved answer agents insert into the composer by typing "/" and its shortcut.

    Placeholders `{{contact.name}}`, `{{contact.first_name}}` and `{{agent.name}}` are filled in
    when it is inserted.
    """

    title = models.CharField(max_length=120)
    shortcut = models.SlugField(
        max_length=60, unique=True, help_text='Typed after "/" in the composer, e.g. "refund".'
    )
    body = models.TextField()
    team = models.ForeignKey(
        "accounts.Team",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="canned_replies",
        help_text="Only this team's members see it; blank: everyone.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return f"/{self.shortcut} {self.title}"


class Label(models.Model):
    """A tag agents put on sessions ("billing", "vip"), shown in the list and the thread."""

    class Color(models.TextChoices):
        # Named colours rather than free hex values: each has a tested pair of shades that
        # keeps label text readable (4.5:1) in the light and the dark theme.
        GREY = "grey", "Grey"
        RED = "red", "Red"
        ORANGE = "orange", "Orange"
        YELLOW = "yellow", "Yellow"
        GREEN = "green", "Green"
        TEAL = "teal", "Teal"
        BLUE = "blue", "Blue"
        PURPLE = "purple", "Purple"
        PINK = "pink", "Pink"

    name = models.CharField(max_length=60, unique=True)
    color = models.CharField(max_length=20, choices=Color.choices, default=Color.GREY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MediaFile(models.Model):
    """A message's file as kept in our storage, with where it stands in its lifecycle.

    Inbound: the row is written with its message (`pending`, naming the platform's copy in
    `source_*`), and a task fetches the file through the provider into our storage (`stored`),
    or says why it could not (`failed`, which an agent can retry; `expired`: the platform no
    longer has it). Outbound: an agent's upload is `stored` from the start. Retention deletes
    the stored bytes (`deleted`) and keeps the row, so the thread says what was there.
    One row per message (the first media item; further items stay in `Message.attachments`).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        STORED = "stored", "Stored"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        DELETED = "deleted", "Deleted"

    account = models.ForeignKey(
        "integrations.ProviderAccount", on_delete=models.PROTECT, related_name="media_files"
    )
    channel = models.ForeignKey(
        "integrations.Channel", on_delete=models.PROTECT, related_name="media_files"
    )
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="media_file")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # What the platform said about its copy (inbound): never shown to a browser.
    source_url = models.TextField(blank=True)
    source_id = models.CharField(max_length=255, blank=True)
    declared_type = models.CharField(max_length=255, blank=True)
    declared_sha256 = models.CharField(max_length=128, blank=True)
    # Our copy.
    path = models.CharField(max_length=500, blank=True)
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(
        max_length=255, blank=True, help_text="Sniffed from the bytes, not taken from the platform."
    )
    inline = models.BooleanField(
        default=False, help_text="Shown in the page (False: offered as a download only)."
    )
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    thumbnail_path = models.CharField(max_length=500, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    # The fetch.
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # What the sweeper looks for: fetches due (or whose worker died), oldest first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state="pending"),
                name="mediafile_pending_idx",
            ),
            # Retention: a channel's stored files by age; storage used per channel.
            models.Index(fields=["channel", "state", "stored_at"], name="mediafile_channel_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.filename or 'media'} ({self.get_state_display()})"
