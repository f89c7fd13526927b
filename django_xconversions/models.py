"""Ad accounts, pixels, event tags, the conversion outbox and its delivery log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_xconversions import crypto

base36_validator = RegexValidator(
    r"^[0-9a-z]+$", _("Must be a base36 id: lower-case letters and digits only.")
)

# Permissions X requires of the token's user to send conversions for an account.
SENDING_PERMISSIONS = frozenset({"AD_MANAGER", "ACCOUNT_ADMIN"})


@dataclass(frozen=True)
class Credentials:
    """Decrypted tokens, handed to the client only; the repr never shows them."""

    access_token: str = field(default="", repr=False)
    access_token_secret: str = field(default="", repr=False)
    pixel_token: str = field(default="", repr=False)


def _encrypt_or_blank(value: str) -> str:
    return crypto.encrypt(value) if value else ""


def _decrypt_or_blank(value: str) -> str:
    return crypto.decrypt(value) if value else ""


def _reencrypt_fields(instance: models.Model, names: tuple[str, ...], kwargs: Any) -> None:
    """Key rotation: secrets written with an older ENCRYPTION_KEY entry are re-encrypted
    with the first one whenever the row is saved with them."""
    update_fields = kwargs.get("update_fields")
    for name in names:
        if update_fields is None or name in update_fields:
            setattr(instance, name, crypto.reencrypted(getattr(instance, name)))


class AdAccount(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")

    account_id = models.CharField(
        _("X account id"), max_length=32, unique=True, validators=[base36_validator]
    )
    name = models.CharField(max_length=200, blank=True)
    # Ciphertext only (Fernet); the plain tokens are never kept on the instance.
    access_token_encrypted = models.TextField(blank=True, editable=False)
    access_token_secret_encrypted = models.TextField(blank=True, editable=False)
    # The columns holding secrets (encrypted with ENCRYPTION_KEY) and what each holds: save()
    # re-encrypts them, stored_secrets surveys and rotates them.
    ENCRYPTED_FIELDS: ClassVar[dict[str, str]] = {
        "access_token_encrypted": "access token",
        "access_token_secret_encrypted": "access token secret",
    }
    x_user_id = models.CharField(_("X user id of the token"), max_length=32, blank=True)
    x_screen_name = models.CharField(max_length=100, blank=True)
    permissions = models.JSONField(default=list, blank=True)
    access_checked_at = models.DateTimeField(null=True, blank=True)
    access_check_ok = models.BooleanField(null=True, blank=True)
    access_check_message = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # The event budget shared by every worker (see budget.py), and X's 429 wait.
    budget_window_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    budget_limit = models.PositiveIntegerField(null=True, blank=True, editable=False)
    budget_used = models.PositiveIntegerField(default=0, editable=False)
    # Whether the window above is X's (from its rate-limit headers) or our own.
    budget_window_from_x = models.BooleanField(default=False, editable=False)
    rate_limited_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("ad account")
        ordering = ["name", "account_id"]
        permissions = [
            ("send_conversions", "Can send conversions to X"),
            ("manage_tags", "Can create, change and delete event tags on X"),
            ("check_access", "Can check an account's access on X"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})" if self.name else self.account_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        _reencrypt_fields(self, tuple(self.ENCRYPTED_FIELDS), kwargs)
        super().save(*args, **kwargs)

    def set_tokens(self, access_token: str, access_token_secret: str) -> None:
        self.access_token_encrypted = _encrypt_or_blank(access_token)
        self.access_token_secret_encrypted = _encrypt_or_blank(access_token_secret)

    @property
    def has_tokens(self) -> bool:
        return bool(self.access_token_encrypted and self.access_token_secret_encrypted)

    def credentials(self, pixel: Pixel | None = None) -> Credentials:
        return Credentials(
            access_token=_decrypt_or_blank(self.access_token_encrypted),
            access_token_secret=_decrypt_or_blank(self.access_token_secret_encrypted),
            pixel_token=_decrypt_or_blank(pixel.pixel_token_encrypted) if pixel else "",
        )

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def resume(self) -> None:
        """Let the account send again (after its credentials were fixed)."""
        self.status = self.Status.ACTIVE
        self.paused_reason = ""
        self.paused_at = None
        self.rate_limited_until = None
        self.save(update_fields=["status", "paused_reason", "paused_at", "rate_limited_until"])


class Pixel(models.Model):
    pixel_id = models.CharField(
        _("pixel id"),
        max_length=32,
        unique=True,
        validators=[base36_validator],
        help_text=_("The base36 id of the X pixel (base tag), e.g. o8z6j."),
    )
    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="pixels")
    name = models.CharField(max_length=200, blank=True)
    # Optional per-pixel Conversions API token, sent as X-Pixel-Token instead of OAuth.
    pixel_token_encrypted = models.TextField(blank=True, editable=False)
    ENCRYPTED_FIELDS: ClassVar[dict[str, str]] = {"pixel_token_encrypted": "pixel token"}
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("pixel")
        ordering = ["pixel_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.pixel_id})" if self.name else self.pixel_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        _reencrypt_fields(self, tuple(self.ENCRYPTED_FIELDS), kwargs)
        super().save(*args, **kwargs)

    def set_pixel_token(self, token: str) -> None:
        self.pixel_token_encrypted = _encrypt_or_blank(token)

    @property
    def has_pixel_token(self) -> bool:
        return bool(self.pixel_token_encrypted)


class EventTag(models.Model):
    class Type(models.TextChoices):
        ADDED_PAYMENT_INFO = "ADDED_PAYMENT_INFO", _("Added payment info")
        ADD_TO_CART = "ADD_TO_CART", _("Add to cart")
        ADD_TO_WISHLIST = "ADD_TO_WISHLIST", _("Add to wishlist")
        CHECKOUT_INITIATED = "CHECKOUT_INITIATED", _("Checkout initiated")
        CONTENT_VIEW = "CONTENT_VIEW", _("Content view")
        CUSTOM = "CUSTOM", _("Custom")
        DOWNLOAD = "DOWNLOAD", _("Download")
        PRODUCT_CUSTOMIZATION = "PRODUCT_CUSTOMIZATION", _("Product customization")
        PURCHASE = "PURCHASE", _("Purchase")
        SEARCH = "SEARCH", _("Search")
        SIGN_UP = "SIGN_UP", _("Sign up (Lead)")
        SITE_VISIT = "SITE_VISIT", _("Site visit (Page view)")
        START_TRIAL = "START_TRIAL", _("Start trial")
        SUBSCRIBE = "SUBSCRIBE", _("Subscribe")

    class Status(models.TextChoices):
        UNVERIFIED = "UNVERIFIED", _("Unverified")
        TRACKING = "TRACKING", _("Tracking")

    CLICK_WINDOWS = (1, 7, 14, 30)
    VIEW_THROUGH_WINDOWS = (0, 1, 7, 14, 30)

    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="event_tags")
    pixel = models.ForeignKey(
        Pixel,
        on_delete=models.PROTECT,
        related_name="event_tags",
        null=True,
        blank=True,
        help_text=_("The pixel its conversions are sent through."),
    )
    remote_id = models.CharField(
        _("X tag id"), max_length=32, unique=True, validators=[base36_validator]
    )
    website_tag_id = models.CharField(
        _("event id"),
        max_length=32,
        validators=[base36_validator],
        help_text=_("The id X expects as event_id in conversions."),
    )
    key = models.SlugField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text=_('Local name track() and SOURCES use, e.g. "purchase".'),
    )
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32, choices=Type.choices)
    click_window = models.PositiveSmallIntegerField(
        choices=[(d, f"{d} days") for d in CLICK_WINDOWS], default=30
    )
    view_through_window = models.PositiveSmallIntegerField(
        choices=[(d, f"{d} days") for d in VIEW_THROUGH_WINDOWS], default=1
    )
    retargeting_enabled = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNVERIFIED)
    last_tracked_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False, help_text=_("Deleted on X."))
    raw = models.JSONField(default=dict, blank=True, help_text=_("The tag as X last sent it."))
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("event tag")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key or self.website_tag_id})"


# The fields X's event is built from (the event tag's id aside), in the order the
# sending path reads them (claimed.ClaimedRow): a row's wire_text was written from
# exactly these values.
EVENT_FIELDS = (
    "conversion_time",
    "conversion_id",
    "twclid",
    "hashed_email",
    "hashed_phone",
    "ip_address",
    "user_agent",
    "value",
    "currency",
    "number_items",
    "description",
    "contents",
)
_EVENT_NAMES = frozenset(EVENT_FIELDS)
_EVENT_SCALARS = tuple(name for name in EVENT_FIELDS if name != "contents")


class ConversionQuerySet(models.QuerySet["Conversion"]):
    def due(self, now: Any = None) -> ConversionQuerySet:
        return self.filter(
            status=Conversion.Status.PENDING, next_attempt_at__lte=now or timezone.now()
        )

    def update(self, **kwargs: Any) -> int:
        # Values written by expression cannot be turned into the event here: the event
        # is built from the fields again when sent (bulk_update comes through here too).
        if _EVENT_NAMES.intersection(kwargs) and "wire_text" not in kwargs:
            kwargs["wire_text"] = None
        return super().update(**kwargs)

    def bulk_create(
        self, objs: Iterable[Conversion], *args: Any, **kwargs: Any
    ) -> list[Conversion]:
        objs = list(objs)
        for conversion in objs:
            conversion.drop_stale_wire_text()
        return super().bulk_create(objs, *args, **kwargs)


class Conversion(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")
        # Cannot be routed yet (no tag with its key, or a tag without a pixel): kept with
        # its reason and routed once the configuration is fixed. Nothing bound is dropped.
        HELD = "held", _("Held")

    class ErrorReason(models.TextChoices):
        # failed
        INVALID = "invalid", _("Invalid (refused before sending)")
        REJECTED = "rejected", _("Rejected by X")
        NOT_FOUND = "not_found", _("Event not found on X")
        MAX_ATTEMPTS = "max_attempts", _("Gave up after retries")
        # pending again
        TRANSIENT = "transient", _("Transient error, will retry")
        # skipped
        CONSENT = "consent", _("No consent")
        MANUAL = "manual", _("Skipped by an admin")
        # held
        NO_TAG = "no_tag", _("No event tag with this key")
        NO_PIXEL = "no_pixel", _("Event tag has no pixel")
        TAG_DELETED = "tag_deleted", _("Event tag deleted on X")

    # Null only while held without a tag. No index of its own: the unique
    # (event_tag, conversion_id) constraint leads with it, and every index costs an entry
    # on each status change.
    event_tag = models.ForeignKey(
        EventTag,
        on_delete=models.PROTECT,
        related_name="conversions",
        db_index=False,
        null=True,
        blank=True,
    )
    # The key track() or SOURCES named; routes a held conversion once a tag has it.
    event_key = models.CharField(max_length=64, blank=True)
    # Denormalised from the tag so "due conversions of one pixel" is one index scan.
    # Null only while held. No index of its own: the due index leads with it, and each
    # index costs an entry on both writes of every send (the claim and the outcome).
    pixel = models.ForeignKey(
        Pixel,
        on_delete=models.PROTECT,
        related_name="conversions",
        db_index=False,
        null=True,
        blank=True,
    )
    conversion_time = models.DateTimeField()
    conversion_id = models.CharField(max_length=255)
    # Identifiers: hashes only, never a raw email or phone number.
    twclid = models.CharField(max_length=255, blank=True)
    hashed_email = models.CharField(max_length=64, blank=True)
    hashed_phone = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    number_items = models.PositiveIntegerField(null=True, blank=True)
    description = models.TextField(blank=True)
    contents = models.JSONField(default=list, blank=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True)
    error_reason = models.CharField(
        max_length=32, choices=ErrorReason.choices, blank=True, default=""
    )
    debug_id = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    source_type = models.ForeignKey(
        ContentType,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # xconv_source leads with it
    )
    source_id = models.CharField(max_length=64, blank=True)
    source = GenericForeignKey("source_type", "source_id")

    # The event as X's JSON text, but for its event_id (the tag's, read when sent),
    # written by the capture (tracking.py) for an event that surely passes validation,
    # so that sending passes it on instead of building and checking it again. Null when
    # not known: the row was written some other way, or its event fields changed since
    # (see drop_stale_wire_text), or it was sent or failed (sent rows keep no copy).
    # Null rather than blank so that adding the column rewrites no table. A release that
    # changes how events are written must set it to null in a migration.
    wire_text = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001
    # The event fields' values wire_text was written from (set_wire_text).
    _wire_source: tuple[Any, ...] | None = None

    objects = ConversionQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversion")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_tag", "conversion_id"], name="xconv_unique_tag_conversion_id"
            ),
            # Held without a tag: repeats of one key and conversion_id are still no-ops.
            models.UniqueConstraint(
                fields=["event_key", "conversion_id"],
                condition=Q(event_tag__isnull=True),
                name="xconv_unique_key_conversion_id",
            ),
        ]
        indexes = [
            # Partial: only pending rows, per pixel, in the claim's order (due time, then
            # id: rows sharing a due time are read in order, never sorted).
            models.Index(
                fields=["pixel", "next_attempt_at", "id"],
                condition=Q(status="pending"),
                name="xconv_due_pending_pk",
            ),
            # The rows in flight: expired leases, and a worker's claims found by token
            # (outcomes are written by primary key, guarded by the token).
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="sending"),
                name="xconv_sending_lease",
            ),
            # The admin's status filter and health's counts. Rows in flight or sent are
            # left out, so neither write of a send adds an entry here: "sending" is read
            # through the lease index, "sent" through xconv_created and xconv_sent_at.
            models.Index(
                fields=["status", "created_at"],
                condition=Q(status__in=["pending", "failed", "skipped", "held"]),
                name="xconv_unsent_created",
            ),
            # The health chart and "last sent": recent outcomes without a table scan.
            models.Index(fields=["sent_at"], condition=Q(status="sent"), name="xconv_sent_at"),
            models.Index(
                fields=["failed_at"], condition=Q(status="failed"), name="xconv_failed_at"
            ),
            models.Index(fields=["source_type", "source_id"], name="xconv_source"),
            models.Index(fields=["event_key"], condition=Q(status="held"), name="xconv_held"),
            # The admin's default order (newest first; the pk breaks ties of bulk writes).
            models.Index(fields=["created_at", "id"], name="xconv_created"),
            # The admin's pixel filter in that order, and the PROTECT check when a pixel is
            # deleted (the foreign key has no index of its own: the due index serves the
            # engine, and this one the rest).
            models.Index(fields=["pixel", "created_at", "id"], name="xconv_pixel_created"),
            # The admin's reason filter: only rows with a reason (a few percent) are indexed.
            models.Index(
                fields=["error_reason", "created_at"],
                condition=~Q(error_reason=""),
                name="xconv_reason_created",
            ),
            # Health's held summary: counted per reason and key from the index alone.
            models.Index(
                fields=["error_reason", "event_key"],
                condition=Q(status="held"),
                name="xconv_held_reason",
            ),
        ]

    def __str__(self) -> str:
        # Held rows have no tag yet: their key says where they are bound.
        route = self.event_tag_id if self.event_tag_id is not None else self.event_key
        return f"{route}:{self.conversion_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        written = kwargs.get("update_fields")
        deferred = self.get_deferred_fields()
        if written is None and deferred:
            # Django writes the fields that were loaded.
            loaded = {f.attname for f in self._meta.concrete_fields if not f.primary_key}
            written = loaded - deferred
        if written is None:
            self.drop_stale_wire_text()
        elif _EVENT_NAMES.intersection(written):
            if deferred:
                # Read from the database, so never given by set_wire_text (and comparing
                # would read the deferred fields).
                self.wire_text = None
            else:
                self.drop_stale_wire_text()
            kwargs["update_fields"] = {*written, "wire_text"}
        super().save(*args, **kwargs)

    def set_wire_text(self, text: str | None) -> None:
        """Keep ``text`` as this row's wire_text, written from its event fields as they
        are now; a later change to any of them drops it when the row is written."""
        self.wire_text = text
        self._wire_source = self._event_values() if text is not None else None

    def drop_stale_wire_text(self) -> None:
        """Forget wire_text unless set_wire_text gave it for the event fields as they
        are now (a row read from the database and written again, or copied, or changed
        since, is built from its fields when sent)."""
        if self.wire_text is not None and self._wire_source != self._event_values():
            self.wire_text = None

    def _event_values(self) -> tuple[Any, ...]:
        # The contents as text: a snapshot, where the list itself may be changed in place.
        return (*(getattr(self, name) for name in _EVENT_SCALARS), repr(self.contents))


class DeliveryAttempt(models.Model):
    """One request to X's conversions endpoint, whatever its outcome."""

    class Outcome(models.TextChoices):
        SENT = "sent", _("Sent")
        BAD_REQUEST = "bad_request", _("Bad request (400)")
        UNAUTHORIZED = "unauthorized", _("Unauthorized (401)")
        FORBIDDEN = "forbidden", _("Forbidden (403)")
        NOT_FOUND = "not_found", _("Not found (404)")
        RATE_LIMITED = "rate_limited", _("Rate limited (429)")
        SERVER_ERROR = "server_error", _("Server error (5xx)")
        CLIENT_ERROR = "client_error", _("Other client error (4xx)")
        TRANSPORT_ERROR = "transport_error", _("Connection error")
        TIMEOUT = "timeout", _("Timeout")
        NOT_CONFIGURED = "not_configured", _("Account not configured (nothing sent)")

    account = models.ForeignKey(
        AdAccount, on_delete=models.SET_NULL, null=True, related_name="delivery_attempts"
    )
    pixel = models.ForeignKey(
        Pixel, on_delete=models.SET_NULL, null=True, related_name="delivery_attempts"
    )
    event_count = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    error_body = models.TextField(blank=True)
    debug_id = models.CharField(max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("delivery attempt")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.pixel_id} x{self.event_count}: {self.http_status or self.outcome}"


class WorkerHeartbeat(models.Model):
    """A ``send_conversions --loop`` worker's sign of life, so health can tell a dead or
    stuck sender from an idle one."""

    worker_id = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_beat_at = models.DateTimeField(db_index=True)
    current_pixel = models.CharField(max_length=32, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("worker")
        ordering = ["-last_beat_at"]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


class SentTally(models.Model):
    """Conversions sent per local day, counted once their ``sent_at`` has settled, so the
    health chart reads a few small rows instead of millions of index entries. A memo kept
    by health.py when it reads; delivery never writes it."""

    day = models.DateField()
    time_zone = models.CharField(max_length=64)
    sent = models.PositiveBigIntegerField(default=0)
    # Counts the rows sent from the start of the day until this moment.
    counted_until = models.DateTimeField()

    class Meta:
        verbose_name = _("sent tally")
        constraints = [models.UniqueConstraint(fields=["time_zone", "day"], name="xconv_tally_day")]

    def __str__(self) -> str:
        return f"{self.day} ({self.time_zone}): {self.sent}"


class ReadinessTally(models.Model):
    """Conversions recorded per local day and event key, with how many carried each
    identifier X matches on, counted once their ``created_at`` has settled: the match
    readiness view reads a month of these small rows instead of millions of conversions.
    A memo kept by readiness.py when it reads; capture never writes it."""

    day = models.DateField()
    time_zone = models.CharField(max_length=64)
    # {event key: {"conversions": n, "twclid": n, ...}} (see readiness.Counts).
    counts = models.JSONField(default=dict)
    # Counts the rows created from the start of the day until this moment.
    counted_until = models.DateTimeField()

    class Meta:
        verbose_name = _("match readiness")
        verbose_name_plural = _("match readiness")
        constraints = [
            models.UniqueConstraint(fields=["time_zone", "day"], name="xconv_readiness_day")
        ]

    def __str__(self) -> str:
        return f"{self.day} ({self.time_zone})"
