"""Models bound to X events from settings: an order becomes a conversion when it is paid.

Each entry of ``XCONVERSIONS["SOURCES"]``::

    {
        "model": "shop.Order",             # app_label.Model
        "event": "purchase",               # the EventTag key
        "when": {"field": "status", "value": "paid"},   # or "created" (the default)
        "email": "customer.email",         # attribute path on the instance, or a
        "phone": "phone",                  # dotted path to a callable(instance)
        "value": "total",
        "currency": "currency",
        "number_items": "item_count",
        "contents": "shop.tracking.order_contents",
        "description": "number",
        "conversion_id": "number",         # default "<app_label.model>:<pk>"
    }

The receiver runs inside the save's transaction, so a rolled-back order leaves no
conversion, and writes with one INSERT ... ON CONFLICT DO NOTHING keyed on
(event tag, conversion_id): saving the order again never duplicates it.

The order's save always succeeds because of tracking:

- a value that breaks a rule (a malformed email, a total of 10^14, a reader that raises)
  stores the conversion ``failed`` with each field and rule, as track() reports them;
- an event no tag can take yet (no tag with the key, no pixel, deleted on X) stores it
  ``held`` with the reason, routed once the configuration is fixed (routing.py);
- the write runs in a savepoint: even an unexpected database error leaves the caller's
  transaction usable (PostgreSQL aborts a whole transaction on any error otherwise); it
  is logged without identifiers and stored as a failed row when that still works.

``checks.py`` reports a misconfigured source at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, router, transaction
from django.db.models.signals import post_init, post_save
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from django_xconversions.conf import setting_path, xsettings

# Capture's stable logger name (shared with context.py), documented in the README.
logger = logging.getLogger("django_xconversions.capture")

READABLE = (
    "email",
    "phone",
    "value",
    "currency",
    "number_items",
    "contents",
    "description",
    "conversion_id",
)
KNOWN_KEYS = frozenset({"model", "event", "when", *READABLE})
INITIAL_ATTRIBUTE = "_xconversions_initial"


class SourceError(ValueError):
    """A SOURCES entry that cannot work; the message names the entry and the rule."""


@dataclass(frozen=True)
class Reader:
    """How one value is read off an instance: an attribute path or a callable."""

    spec: str
    attributes: tuple[str, ...] = ()
    function: Callable[[Any], Any] | None = None

    def __call__(self, instance: models.Model) -> Any:
        if self.function is not None:
            return self.function(instance)
        value: Any = instance
        for name in self.attributes:
            value = getattr(value, name, None)
            if value is None:
                return None
        return value() if callable(value) else value


@dataclass(frozen=True)
class Source:
    label: str  # "SOURCES[0] (shop.Order)", for messages
    model: type[models.Model]
    event: str
    field: str | None  # None: fires on create
    value: Any
    readers: dict[str, Reader]

    def fires(self, instance: models.Model, created: bool) -> bool:
        if self.field is None:
            return created
        current = getattr(instance, self.field)
        if current != self.value:
            return False
        initial = getattr(instance, INITIAL_ATTRIBUTE, {}).get(self.field, _UNKNOWN)
        return created or initial != current

    def conversion_id(self, instance: models.Model) -> str:
        reader = self.readers.get("conversion_id")
        if reader is not None:
            value = reader(instance)
            if value not in (None, ""):
                return str(value)
        return f"{self.model._meta.label_lower}:{instance.pk}"


_UNKNOWN = object()


def _reader(label: str, key: str, spec: Any, model: type[models.Model]) -> Reader:
    if callable(spec):
        return Reader(getattr(spec, "__qualname__", repr(spec)), function=spec)
    if not isinstance(spec, str) or not spec:
        raise SourceError(
            f"{label}: '{key}' must be a field name, an attribute path or a dotted path "
            "to a callable."
        )
    first = spec.split(".", 1)[0]
    if has_attribute(model, first):
        return Reader(spec, attributes=tuple(spec.split(".")))
    if "." in spec:
        try:
            function = import_string(spec)
        except (ImportError, ValueError, TypeError) as exc:  # "." and "..." are neither
            raise SourceError(
                f"{label}: '{key}' is {spec!r}, neither an attribute of {model._meta.label} "
                f"nor an importable callable ({exc})."
            ) from None
        if not callable(function):
            raise SourceError(f"{label}: '{key}' is {spec!r}, which is not callable.")
        return Reader(spec, function=function)
    raise SourceError(
        f"{label}: '{key}' is {spec!r}, which is not a field or attribute of {model._meta.label}."
    )


def has_attribute(model: type[models.Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return hasattr(model, name)
    return True


def parse(index: int, entry: Any) -> Source:
    """One SOURCES entry, checked; SourceError names what is wrong."""
    label = f"{setting_path('SOURCES')}[{index}]"
    if not isinstance(entry, dict):
        raise SourceError(f"{label} must be a dict with at least 'model' and 'event'.")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise SourceError(
            f"{label} has unknown keys {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_KEYS))})."
        )
    try:
        model = apps.get_model(entry.get("model", ""))
    except (LookupError, ValueError):
        raise SourceError(
            f"{label}: 'model' must name an installed model as 'app_label.Model' "
            f"(got {entry.get('model')!r})."
        ) from None
    label = f"{label} ({model._meta.label})"
    event = entry.get("event")
    if not isinstance(event, str) or not event:
        raise SourceError(f"{label}: 'event' must be the key of an event tag, such as 'purchase'.")
    when = entry.get("when", "created")
    field, value = None, None
    if when != "created":
        if not isinstance(when, dict) or set(when) != {"field", "value"}:
            raise SourceError(
                f'{label}: \'when\' must be "created" or {{"field": name, "value": value}}.'
            )
        field, value = when["field"], when["value"]
        try:
            field = model._meta.get_field(field).attname
        except FieldDoesNotExist:
            raise SourceError(
                f"{label}: 'when' names field {field!r}, which {model._meta.label} does not have."
            ) from None
    readers = {key: _reader(label, key, entry[key], model) for key in READABLE if key in entry}
    if not {"email", "phone"} & set(readers):
        logger.debug("%s reads no email or phone: only the request's twclid/IP identify it.", label)
    return Source(label, model, event, field, value, readers)


def configured() -> list[Source]:
    return [parse(index, entry) for index, entry in enumerate(xsettings.SOURCES or [])]


Errors = dict[str, list[str]]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _reading_failed(reader: Reader, exc: Exception) -> str:
    # The exception's type only: its message may quote the instance's raw values.
    return f"reading {reader.spec} raised {type(exc).__name__}."


@sensitive_variables()
def read_values(source: Source, instance: models.Model) -> tuple[dict[str, Any], Errors]:
    """The values the readers give (blanks left out), and the readers that raised."""
    values: dict[str, Any] = {}
    errors: Errors = {}
    for key, reader in source.readers.items():
        if key == "conversion_id":
            continue
        try:
            value = reader(instance)
        except Exception as exc:  # the project's code: any failure is a value we lack
            errors[key] = [_reading_failed(reader, exc)]
            continue
        if not _blank(value):
            values[key] = value
    return values, errors


def conversion_id_of(source: Source, instance: models.Model, errors: Errors) -> str:
    """The configured conversion_id, else "<app_label.model>:<pk>" (also when the
    configured one is unusable: the row must be storable to show the problem)."""
    from django_xconversions import tracking

    default = f"{source.model._meta.label_lower}:{instance.pk}"
    reader = source.readers.get("conversion_id")
    if reader is None:
        return default
    try:
        value = reader(instance)
    except Exception as exc:
        errors["conversion_id"] = [_reading_failed(reader, exc)]
        return default
    if _blank(value):
        return default
    limit = tracking.CONVERSION_ID_MAX_LENGTH
    text = tracking.clean_text(value, "conversion_id", errors, limit, min_length=1)
    return text or default


def failed_conversion(
    source: Source, instance: models.Model, conversion_id: str, errors: Errors
) -> Any:
    """A failed row that names each field and rule, without the values (they may be
    raw identifiers); on the event's tag when it has one with a pixel."""
    from django_xconversions import routing, tracking
    from django_xconversions.models import Conversion

    key = source.event if tracking.EVENT_KEY.fullmatch(source.event) else ""
    route = routing.resolve(key) if key else None
    tag = route.tag if route is not None and route.routable else None
    now = timezone.now()
    return Conversion(
        event_tag=tag,
        pixel_id=tag.pixel_id if tag is not None else None,
        event_key=key,
        conversion_id=conversion_id,
        conversion_time=now,
        status=Conversion.Status.FAILED,
        failed_at=now,
        error_reason=Conversion.ErrorReason.INVALID,
        last_error="; ".join(f"{field}: {' '.join(m)}" for field, m in errors.items()),
        **tracking.source_fields(instance, {}),
    )


@sensitive_variables()
def record(source: Source, instance: models.Model) -> None:
    """Write the conversion for ``instance``: pending, held, or failed with the fields
    and rules its values break. Raises only for an unexpected (database) error: see
    capture()."""
    from django_xconversions import tracking

    values, errors = read_values(source, instance)
    conversion_id = conversion_id_of(source, instance, errors)
    try:
        conversion = tracking.track(
            source.event, commit=False, conversion_id=conversion_id, source=instance, **values
        )
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors} or {"conversion": ["is invalid."]}
    if errors:
        conversion = failed_conversion(source, instance, conversion_id, errors)
    tracking.store(conversion, fetch=False)


def _savepoint(using: str) -> AbstractContextManager[Any]:
    """A savepoint inside the caller's transaction (on PostgreSQL an error would abort
    all of it otherwise); outside one, each statement commits alone: nothing to guard."""
    if transaction.get_connection(using).in_atomic_block:
        return transaction.atomic(using=using)
    return nullcontext()


@sensitive_variables()
def capture(source: Source, instance: models.Model) -> None:
    """record() in a savepoint; never raises, so the business save always succeeds."""
    from django_xconversions import tracking
    from django_xconversions.models import Conversion

    using = router.db_for_write(Conversion)
    try:
        with _savepoint(using):
            record(source, instance)
        return
    except Exception as exc:  # the caller's save must succeed whatever happened here
        problem = type(exc).__name__
    conversion_id = conversion_id_of(source, instance, {})
    fields = {"source": source.label, "event": source.event, "problem": problem}
    logger.error(
        "%s: the conversion %s could not be stored (%s); storing it as failed.",
        source.label,
        conversion_id,
        problem,
        extra=fields,
    )
    errors = {"conversion": [f"could not be stored ({problem}); logged by {logger.name}."]}
    try:
        with _savepoint(using):
            failed = failed_conversion(source, instance, conversion_id, errors)
            tracking.store(failed, fetch=False)
    except Exception as again:
        logger.error(
            "%s: the conversion %s could not be stored as failed either (%s).",
            source.label,
            conversion_id,
            type(again).__name__,
            extra={**fields, "problem": type(again).__name__},
        )


def _remember_initial(source_field: str) -> Callable[..., None]:
    def receiver(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        if source_field in instance.get_deferred_fields():
            return  # reading it would cost a query; the save then fires idempotently
        initial = instance.__dict__.setdefault(INITIAL_ATTRIBUTE, {})
        initial[source_field] = instance.__dict__.get(source_field)

    return receiver


def _on_save(source: Source) -> Callable[..., None]:
    def receiver(
        sender: type[models.Model],
        instance: models.Model,
        created: bool,
        raw: bool = False,
        **kwargs: Any,
    ) -> None:
        if raw:
            return  # loaddata: fixtures are not business events
        if source.fires(instance, created):
            capture(source, instance)
        if source.field is not None:
            instance.__dict__.setdefault(INITIAL_ATTRIBUTE, {})[source.field] = getattr(
                instance, source.field
            )

    return receiver


# (model, dispatch uid) of every receiver connect() made, so disconnect() can undo them.
_connected: list[tuple[type[models.Model], str]] = []


def connect() -> list[Source]:
    """Connect a receiver per configured source (AppConfig.ready). Misconfigured entries
    are skipped here; the system checks report them."""
    disconnect()
    sources = []
    for index, entry in enumerate(xsettings.SOURCES or []):
        try:
            source = parse(index, entry)
        except SourceError:
            continue
        uid = f"xconversions-source-{index}"
        post_save.connect(_on_save(source), sender=source.model, weak=False, dispatch_uid=uid)
        if source.field is not None:
            receiver = _remember_initial(source.field)
            post_init.connect(receiver, sender=source.model, weak=False, dispatch_uid=uid)
        _connected.append((source.model, uid))
        sources.append(source)
    return sources


def disconnect() -> None:
    """Remove the receivers connect() made (tests that change SOURCES call connect again)."""
    for model, uid in _connected:
        post_save.disconnect(sender=model, dispatch_uid=uid)
        post_init.disconnect(sender=model, dispatch_uid=uid)
    _connected.clear()
