"""System checks: each message names the exact setting that is missing or wrong."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import validate_slug
from django.db import DatabaseError, models, router, transaction
from django.utils.module_loading import import_string

from django_xconversions import conf, crypto
from django_xconversions.conf import SETTING_NAME, setting_path

Messages = list[checks.CheckMessage]
T = TypeVar("T")
logger = logging.getLogger(__name__)


def check_settings_shape(**kwargs: Any) -> Messages:
    value = getattr(settings, SETTING_NAME, None)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [checks.Error(f"settings.{SETTING_NAME} must be a dict.", id="xconversions.E001")]
    return [
        checks.Error(
            f"Unknown setting {setting_path(str(key))}.",
            hint=_did_you_mean(key),
            id="xconversions.E002",
        )
        for key in sorted((key for key in value if key not in conf.SETTINGS), key=str)
    ]


def _did_you_mean(key: object) -> str:
    match = conf.closest_setting(key)
    if match is None:
        return 'README, "Settings", lists every key.'
    return f"Did you mean {match}?"


def check_encryption_key(**kwargs: Any) -> Messages:
    problem = conf.encryption_key_problem()
    if problem is not None:
        return [checks.Error(problem, id=conf.KEY_CHECK)]
    keys = conf.encryption_keys()
    hint = (
        "Generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'"
    )
    if not keys:
        if settings.DEBUG:
            return [
                checks.Warning(
                    f"{setting_path('ENCRYPTION_KEY')} is not set; tokens are encrypted with "
                    "a key derived from SECRET_KEY (DEBUG only).",
                    hint=hint,
                    id="xconversions.W001",
                )
            ]
        return [
            checks.Error(
                f"{setting_path('ENCRYPTION_KEY')} is required outside DEBUG: it encrypts "
                "the X access tokens stored in the database.",
                hint=hint,
                id="xconversions.E003",
            )
        ]
    return [
        checks.Error(
            f"{setting_path('ENCRYPTION_KEY')} entry {i} is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes).",
            hint=hint,
            id="xconversions.E004",
        )
        for i, key in enumerate(keys)
        if not crypto.is_valid_key(key)
    ]


def check_credentials(**kwargs: Any) -> Messages:
    # A value of the wrong type is check_values' to report; here only what is not set.
    missing = [
        name
        for name in ("CONSUMER_KEY", "CONSUMER_SECRET")
        if conf.problem(name) is None and not conf.configured(name)
    ]
    if not missing:
        return []
    names = " and ".join(setting_path(name) for name in missing)
    return [
        checks.Warning(
            f"{names} not set: OAuth 1.0a calls to X (tag management, access checks, and "
            "sending for pixels without a pixel token) will fail.",
            hint="Copy them from your X app's Keys and tokens page.",
            id="xconversions.W002",
        )
    ]


def _setting_errors(check_id: str) -> Messages:
    """Each setting reported under ``check_id`` whose value breaks its rule (conf.py's
    rules, the ones reading the setting applies)."""
    return [
        checks.Error(problem, id=check_id)
        for name in conf.names_checked_by(check_id)
        if (problem := conf.problem(name)) is not None
    ]


def check_values(**kwargs: Any) -> Messages:
    return _setting_errors(conf.VALUES_CHECK)


def check_sources(**kwargs: Any) -> Messages:
    entries = conf.configured("SOURCES")
    if entries is None:
        return []
    if not isinstance(entries, list | tuple):
        # Entries that are not dicts are reported one by one below, with the others.
        return _setting_errors(conf.SOURCES_CHECK)
    return [
        checks.Error(problem, hint=hint, id="xconversions.E006")
        for index, entry in enumerate(entries)
        for problem, hint in source_problems(index, entry)
    ]


Problem = tuple[str, str | None]  # message, hint


def source_problems(index: int, entry: Any) -> list[Problem]:
    """Every problem of one SOURCES entry (sources.parse stops at the first one)."""
    from django_xconversions import sources

    label = f"{setting_path('SOURCES')}[{index}]"
    if not isinstance(entry, dict):
        return [(f"{label} must be a dict with at least 'model' and 'event'.", None)]
    problems: list[Problem] = []
    unknown = sorted(str(key) for key in set(entry) - sources.KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(sources.KNOWN_KEYS))
        problems.append((f"{label} has unknown keys {', '.join(unknown)} (known: {known}).", None))
    model = _installed_model(entry.get("model"))
    if model is None:
        problems.append(
            (
                f"{label}: 'model' must name an installed model as 'app_label.Model' "
                f"(got {entry.get('model')!r}).",
                "Is its app in INSTALLED_APPS?",
            )
        )
    else:
        label = f"{label} ({model._meta.label})"
    problems += _event_problems(label, entry.get("event"))
    problems += _when_problems(label, entry.get("when", "created"), model)
    if model is not None:
        for key in sources.READABLE:
            if key in entry:
                problem = _reader_problem(index, label, key, entry[key], model)
                if problem is not None:
                    problems.append(problem)
    if not problems:
        # Whatever rule sources.parse holds that the checks above do not know of yet.
        try:
            sources.parse(index, entry)
        except sources.SourceError as exc:
            problems.append((str(exc), None))
        except Exception as exc:  # a check reports; it never crashes `check`
            problems.append((f"{label} cannot be read ({type(exc).__name__}: {exc}).", None))
    return problems


def _installed_model(name: Any) -> type[models.Model] | None:
    if not isinstance(name, str):
        return None
    try:
        return apps.get_model(name)
    except (LookupError, ValueError):
        return None


def _event_problems(label: str, event: Any) -> list[Problem]:
    if not isinstance(event, str) or not event:
        return [(f"{label}: 'event' must be the key of an event tag, such as 'purchase'.", None)]
    try:
        validate_slug(event)
    except ValidationError:
        return [
            (
                f"{label}: 'event' is {event!r}, which no event tag key can be.",
                "Keys are slugs: letters, digits, '-' and '_', at most 64 characters.",
            )
        ]
    if len(event) > EVENT_KEY_MAX_LENGTH:
        return [(f"{label}: 'event' is longer than an event tag key can be (64).", None)]
    return []


EVENT_KEY_MAX_LENGTH = 64


def _when_problems(label: str, when: Any, model: type[models.Model] | None) -> list[Problem]:
    if when == "created":
        return []
    if not isinstance(when, dict) or set(when) != {"field", "value"}:
        return [
            (f'{label}: \'when\' must be "created" or {{"field": name, "value": value}}.', None)
        ]
    if model is None:
        return []
    name, value = when["field"], when["value"]
    field = _concrete_field(model, name)
    if field is None:
        return [
            (
                f"{label}: 'when' names field {name!r}, which {model._meta.label} does not have.",
                "It must be a field stored on the model's own table (not a reverse or "
                "many-to-many relation).",
            )
        ]
    where = f"{model._meta.label}.{field.name}"
    if field.choices:
        choices = [choice for choice, _ in field.flatchoices]
        if value not in choices:
            listed = ", ".join(repr(choice) for choice in choices)
            return [
                (
                    f"{label}: 'when' value {value!r} is not one of the choices of "
                    f"{where} ({listed}).",
                    "The conversion would never be recorded.",
                )
            ]
        return []
    try:
        held = field.to_python(value)
    except ValidationError as exc:
        reason = " ".join(exc.messages).rstrip(".")
        return [
            (f"{label}: 'when' value {value!r} is not a value {where} can hold ({reason}).", None)
        ]
    if held != value:
        return [
            (
                f"{label}: 'when' value {value!r} is not a value {where} can hold "
                f"(it would be stored as {held!r}, so the field never equals {value!r}).",
                f"Write the value as {held!r}.",
            )
        ]
    return []


def _concrete_field(model: type[models.Model], name: Any) -> models.Field[Any, Any] | None:
    if not isinstance(name, str):
        return None
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    if not isinstance(field, models.Field) or not field.concrete or field.many_to_many:
        return None
    return field


def _reader_problem(
    index: int, label: str, key: str, spec: Any, model: type[models.Model]
) -> Problem | None:
    """What is wrong with how SOURCES[index][key] is read, resolved the way sources.py
    reads it: an attribute path when its first name is an attribute of the model, else
    the dotted path of a callable(instance)."""
    if callable(spec):
        return None
    if not isinstance(spec, str) or not spec:
        return (
            f"{label}: '{key}' must be a field name, an attribute path or a dotted path to a "
            "callable.",
            None,
        )
    where = f'({setting_path("SOURCES")}[{index}]["{key}"] = {spec!r})'
    names = spec.split(".")
    from django_xconversions.sources import has_attribute

    if has_attribute(model, names[0]):
        return _attribute_path_problem(model, names, where)
    if len(names) > 1:
        try:
            function = import_string(spec)
        except (ImportError, ValueError, TypeError) as exc:  # "." or "..": not even a path
            if isinstance(exc, ModuleNotFoundError) and exc.name == names[0]:
                # No module of that name either: most likely a mistyped attribute path.
                return _no_attribute(model, names[0], where, module_path_of=len(names))
            return (f"{where[1:-1]} cannot be imported ({exc}).", _READER_HINT)
        if not callable(function):
            return (f"{where[1:-1]} is not callable.", _READER_HINT)
        return None
    return _no_attribute(model, names[0], where)


_READER_HINT = (
    "Use a field, property or method of the model (paths such as 'customer.email' follow "
    "relations), or the dotted path of a callable(instance)."
)


def _no_attribute(
    model: type[models.Model], name: str, where: str, *, module_path_of: int = 0
) -> Problem:
    if module_path_of > 2:
        # "shop.tracking.order_contents" (three names or more, no such module): as likely
        # a callable's path as an attribute path, so say both.
        return (
            f"{model._meta.label} has no attribute {name!r}, and no module {name!r} exists to "
            f"import a callable from {where}.",
            _READER_HINT,
        )
    return (f"{model._meta.label} has no attribute {name!r} {where}.", _READER_HINT)


def _attribute_path_problem(
    model: type[models.Model], names: list[str], where: str
) -> Problem | None:
    """Follow an attribute path through forward relations as far as the models tell; a
    property, method or plain field ends what can be known before run time."""
    current = model
    for name in names:
        try:
            field = current._meta.get_field(name)
        except FieldDoesNotExist:
            if hasattr(current, name):
                return None
            return _no_attribute(current, name, where)
        related = field.related_model
        if not (field.many_to_one or field.one_to_one) or not isinstance(related, type):
            return None
        current = related
    return None


def check_capture_settings(**kwargs: Any) -> Messages:
    found = _setting_errors(conf.CAPTURE_CHECK)
    path = conf.configured("CONSENT_CHECK")
    if isinstance(path, str) and path and conf.problem("CONSENT_CHECK") is None:
        rule = f"{setting_path('CONSENT_CHECK')} must be a dotted path to a callable(request)"
        try:
            if not callable(import_string(path)):
                found.append(checks.Error(f"{rule}.", id=conf.CAPTURE_CHECK))
        except ImportError as exc:
            found.append(checks.Error(f"{rule} ({exc}).", id=conf.CAPTURE_CHECK))
    return found


def check_api_settings(**kwargs: Any) -> Messages:
    found: Messages = []
    for name in conf.names_checked_by(conf.API_CHECK):
        problem = conf.problem(name)
        if problem is not None:
            found.append(checks.Error(problem, id=conf.API_CHECK))
        elif name.endswith("_CLASSES"):
            found += _unimportable_classes(name)
    return found


def _unimportable_classes(name: str) -> Messages:
    found: Messages = []
    paths = conf.configured(name)
    for path in paths if isinstance(paths, list | tuple) else ():
        if not isinstance(path, str):
            continue  # a class given as such
        try:
            import_string(path)
        except ImportError as exc:
            message = f"{setting_path(name)} names {path!r}, which cannot be imported ({exc})."
            found.append(checks.Error(message, id=conf.API_CHECK))
    return found


MIDDLEWARE_PATH = "django_xconversions.middleware.TwclidMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"


def check_middleware(**kwargs: Any) -> Messages:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not in settings.MIDDLEWARE: click ids (twclid) "
                "are not captured.",
                hint=f"Add it after {SESSION_MIDDLEWARE}.",
                id="xconversions.W003",
            )
        ]
    if SESSION_MIDDLEWARE in middleware and middleware.index(SESSION_MIDDLEWARE) > middleware.index(
        MIDDLEWARE_PATH
    ):
        return [
            checks.Error(
                f"{MIDDLEWARE_PATH} must come after {SESSION_MIDDLEWARE} in settings.MIDDLEWARE.",
                id="xconversions.E008",
            )
        ]
    return []


# -- Database-tagged: run by `manage.py check --database default` and by `migrate` ---------


def _readable_aliases(databases: Iterable[str] | None, model: type[models.Model]) -> list[str]:
    return [alias for alias in databases or () if router.allow_migrate_model(alias, model)]


def _read_quietly(alias: str, read: Callable[[str], T]) -> T | None:
    """``read(alias)`` in a savepoint; None when the database cannot answer it yet.

    ``migrate`` runs these checks before it creates the tables (and before it adds the
    columns of a newer release), and a failed query inside a transaction would poison it
    on PostgreSQL: the savepoint keeps the caller's transaction usable."""
    try:
        with transaction.atomic(using=alias):
            return read(alias)
    except DatabaseError as exc:
        logger.debug("Database checks skipped on %r: %s", alias, exc)
        return None


def _source_label(index: int, entry: dict[str, Any]) -> str:
    model = _installed_model(entry.get("model"))
    label = f"{setting_path('SOURCES')}[{index}]"
    return f"{label} ({model._meta.label})" if model is not None else label


def check_source_routes(databases: Iterable[str] | None = None, **kwargs: Any) -> Messages:
    """Each SOURCES event key has a live event tag with a pixel; else its conversions are
    held, and this names the entry, the key and the fix."""
    from django_xconversions.models import EventTag

    entries = conf.configured("SOURCES")
    if not isinstance(entries, list | tuple):
        return []  # check_sources reports it
    keyed = [
        (index, entry, entry["event"])
        for index, entry in enumerate(entries)
        # A key no tag can have (not a slug, NUL, too long) is check_sources' to report.
        if isinstance(entry, dict) and not _event_problems("", entry.get("event"))
    ]
    found: Messages = []
    read = functools.partial(_tags_by_key, {event for _, _, event in keyed})
    for alias in _readable_aliases(databases, EventTag) if keyed else ():
        tags = _read_quietly(alias, read)
        if tags is None:
            continue
        for index, entry, event in keyed:
            subject = f"{_source_label(index, entry)} event {event!r}"
            message = _route_problem(event, subject, tags.get(event))
            if message is not None and message not in found:
                found.append(message)
    return found


def _tags_by_key(keys: set[str], alias: str) -> dict[str | None, Any]:
    from django_xconversions.models import EventTag

    fields = ("key", "name", "deleted", "pixel_id")
    return {t.key: t for t in EventTag.objects.using(alias).filter(key__in=keys).only(*fields)}


def _route_problem(key: str, subject: str, tag: Any) -> checks.CheckMessage | None:
    """Held or not is decided by routing.route_for, as at capture; the fix is its own."""
    from django_xconversions import routing

    route = routing.route_for(key, tag)
    if route.routable:
        return None
    Reason = routing.Reason
    name = getattr(tag, "name", "")
    problem: str = {
        str(Reason.NO_TAG): "no event tag has this key",
        str(Reason.TAG_DELETED): f"event tag {name!r} with this key was deleted on X",
        str(Reason.NO_PIXEL): f"event tag {name!r} has no pixel to send through",
    }.get(route.reason, route.message)
    return checks.Warning(
        f"{subject}: {problem}; its conversions are held until this is fixed.",
        hint=f"To fix it: {routing.fix_for(route.reason)}",
        id="xconversions.W011" if route.reason == Reason.NO_PIXEL else "xconversions.W010",
    )


def check_stored_secrets(databases: Iterable[str] | None = None, **kwargs: Any) -> Messages:
    """Each ad account and pixel whose stored secrets no key in ENCRYPTION_KEY opens, with
    the fix (the survey the admin and rotate_encryption_key use too)."""
    from django_xconversions import stored_secrets
    from django_xconversions.models import AdAccount

    if any(m.is_serious() for m in check_encryption_key()):
        return []  # no key can open anything: that error says it once, not per account
    alias = router.db_for_read(AdAccount)
    if alias not in (databases or ()):
        return []
    unreadable = _read_quietly(alias, lambda _: stored_secrets.unreadable())
    by_owner: dict[tuple[type[models.Model], Any], list[Any]] = {}
    for secret in unreadable or ():
        by_owner.setdefault((type(secret.owner), secret.owner.pk), []).append(secret)
    return [
        checks.Warning(
            stored_secrets.unreadable_summary(secrets),
            hint="Sending stops for what cannot be decrypted; the rest keeps sending.",
            id="xconversions.W012",
        )
        for secrets in by_owner.values()
    ]


def check_sqlite_transaction_mode(**kwargs: Any) -> Messages:
    """SQLite shared by a web server and a sender needs IMMEDIATE transactions: a
    transaction that reads, then writes (the budget, a paid order) fails at once with
    "database is locked" in the default DEFERRED mode, whatever the timeout."""
    found: Messages = []
    for alias, database in settings.DATABASES.items():
        name = str(database.get("NAME", ""))
        if not str(database.get("ENGINE", "")).endswith("sqlite3") or (
            name == ":memory:" or "mode=memory" in name
        ):
            continue  # other engines, and in-memory databases (one process only)
        options: Any = database.get("OPTIONS") or {}
        mode = str(options.get("transaction_mode") or "DEFERRED")
        if mode.upper() != "IMMEDIATE":
            found.append(
                checks.Warning(
                    f"DATABASES[{alias!r}]['OPTIONS'] uses SQLite's {mode.upper()} "
                    "transactions: with a web server and send_conversions writing at once, "
                    'requests and the sender fail with "database is locked".',
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS'] = "
                    '{"transaction_mode": "IMMEDIATE", "timeout": 20, '
                    '"init_command": "PRAGMA journal_mode=WAL;"} (see README, "SQLite").',
                    id="xconversions.W020",
                )
            )
    return found


DATABASE_CHECKS: Iterable[Callable[..., Messages]] = (check_source_routes, check_stored_secrets)


ALL_CHECKS: Iterable[Callable[..., Messages]] = (
    check_sources,
    check_capture_settings,
    check_middleware,
    check_api_settings,
    check_settings_shape,
    check_encryption_key,
    check_credentials,
    check_values,
    check_sqlite_transaction_mode,
)

# Checks that apply only to what uses the key or X's consumer key: registered under their
# own tags, so a command that uses neither (the emulator, purge_conversions) does not
# repeat their warnings. runserver, check and migrate run every check.
TAGS: dict[Callable[..., Messages], tuple[str, ...]] = {
    check_encryption_key: (conf.CHECKS_ENCRYPTION,),
    check_credentials: (conf.CHECKS_X_CREDENTIALS,),
    check_source_routes: (conf.CHECKS, checks.Tags.database),
    check_stored_secrets: (conf.CHECKS, conf.CHECKS_ENCRYPTION, checks.Tags.database),
}


def register() -> None:
    for check in (*ALL_CHECKS, *DATABASE_CHECKS):
        checks.register(check, *TAGS.get(check, (conf.CHECKS,)))
