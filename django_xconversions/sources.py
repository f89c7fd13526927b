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
(event tag, conversion_id): saving the order again never duplicates it. Bad data on one
order (say, a malformed email) never breaks the order's save: the conversion is stored
failed with the reason instead. ``checks.py`` reports a misconfigured source at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models.signals import post_init, post_save
from django.utils import timezone
from django.utils.module_loading import import_string

from django_xconversions.conf import setting_path, xsettings

logger = logging.getLogger(__name__)

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
    if _has_attribute(model, first):
        return Reader(spec, attributes=tuple(spec.split(".")))
    if "." in spec:
        try:
            function = import_string(spec)
        except ImportError as exc:
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


def _has_attribute(model: type[models.Model], name: str) -> bool:
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


def record(source: Source, instance: models.Model) -> None:
    """Write the conversion for ``instance`` (never raises for bad data on the instance)."""
    from django_xconversions import tracking
    from django_xconversions.models import Conversion

    values = {
        key: reader(instance) for key, reader in source.readers.items() if key != "conversion_id"
    }
    values = {key: value for key, value in values.items() if value not in (None, "")}
    conversion_id = source.conversion_id(instance)
    try:
        conversion = tracking.build(
            source.event, conversion_id=conversion_id, source=instance, **values
        )
    except ValidationError as exc:
        tag = tracking.tag_for_key(source.event)
        if tag is None or tag.pixel_id is None:
            # Nothing to attach a row to: a configuration problem the checks also report.
            logger.error(
                "%s: cannot record %s: %s", source.label, conversion_id, "; ".join(exc.messages)
            )
            return
        # Kept visible as failed, without the values that failed (they may be raw PII).
        conversion = Conversion(
            event_tag=tag,
            pixel_id=tag.pixel_id,
            conversion_id=conversion_id,
            conversion_time=timezone.now(),
            status=Conversion.Status.FAILED,
            failed_at=timezone.now(),
            error_reason="invalid",
            last_error="; ".join(
                f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items()
            ),
        )
    tracking.store(conversion, fetch=False)


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
            record(source, instance)
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
