"""Which configured key opens each stored secret (access tokens, pixel tokens).

One survey for everything that asks: the rotation command, the admin's account and pixel
pages, and the system check that names accounts and pixels whose secrets no key opens.
Only positions and counts leave this module, never a secret.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Model

from django_xconversions import crypto
from django_xconversions.models import AdAccount, Pixel


@dataclass(frozen=True)
class SecretField:
    model: type[AdAccount] | type[Pixel]
    column: str
    label: str


FIELDS: tuple[SecretField, ...] = tuple(
    SecretField(model, column, label)
    for model in (AdAccount, Pixel)
    for column, label in model.ENCRYPTED_FIELDS.items()
)


def _columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(f.column for f in FIELDS if f.model is model)


def _loaded(model: type[AdAccount] | type[Pixel]) -> tuple[str, ...]:
    """The columns a survey reads: the secrets and what names their owner."""
    names = ("account_id", "name") if model is AdAccount else ("pixel_id", "name")
    return ("pk", *names, *_columns(model))


@dataclass(frozen=True)
class StoredSecret:
    """One non-blank secret column of one row, and the key that opens it."""

    owner: AdAccount | Pixel
    column: str
    label: str
    key: int | None  # position in crypto.active_keys() (0: the first); None: no key opens it
    written_at: int | None = None  # epoch seconds it was encrypted at (when readable)

    @property
    def readable(self) -> bool:
        return self.key is not None

    def owner_label(self) -> str:
        if isinstance(self.owner, Pixel):
            name = f" ({self.owner.name})" if self.owner.name else ""
            return f"pixel {self.owner.pixel_id}{name}"
        return f"ad account {self.owner}"

    def describe(self) -> str:
        """``ad account Shop (18ce54d4x5t): access token``."""
        return f"{self.owner_label()}: {self.label}"


def _secrets_of(rows: Iterable[AdAccount | Pixel]) -> list[StoredSecret]:
    found = []
    for row in rows:
        for spec in FIELDS:
            if isinstance(row, spec.model):
                value = getattr(row, spec.column)
                if value:
                    opened = crypto.identify(value)
                    found.append(
                        StoredSecret(row, spec.column, spec.label, None)
                        if opened is None
                        else StoredSecret(
                            row, spec.column, spec.label, opened.key, opened.written_at
                        )
                    )
    return found


def survey() -> list[StoredSecret]:
    """Every stored secret of every account and pixel."""
    accounts = AdAccount.objects.only(*_loaded(AdAccount))
    pixels = Pixel.objects.only(*_loaded(Pixel))
    return _secrets_of([*accounts.order_by("pk"), *pixels.order_by("pk")])


def unreadable() -> list[StoredSecret]:
    """Every stored secret no configured key opens."""
    return [s for s in survey() if not s.readable]


def unreadable_of_pixel(pixel: Pixel) -> list[StoredSecret]:
    return [s for s in _secrets_of([pixel]) if not s.readable]


def unreadable_of_account(account: AdAccount) -> list[StoredSecret]:
    """The account's secrets, and its pixels', that no configured key opens."""
    rows: list[AdAccount | Pixel] = [account, *account.pixels.order_by("pk")]
    return [s for s in _secrets_of(rows) if not s.readable]


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def unreadable_summary(secrets: list[StoredSecret]) -> str:
    """One message for people: which secrets cannot be read, and what to do about it."""
    by_owner: dict[str, list[str]] = {}
    for secret in secrets:
        by_owner.setdefault(secret.owner_label(), []).append(secret.label)
    subject = _joined([f"the {_joined(labels)} of {owner}" for owner, labels in by_owner.items()])
    fixes = []
    if any(isinstance(s.owner, AdAccount) for s in secrets):
        fixes.append("reconnect the account with X (or type its access tokens again)")
    if any(isinstance(s.owner, Pixel) for s in secrets):
        fixes.append("type the pixel token again")
    return crypto.unreadable_message(
        subject[0].upper() + subject[1:], plural=len(secrets) > 1, fix=" and ".join(fixes)
    )


# -- rotation ------------------------------------------------------------------------------


@dataclass
class Census:
    """How many stored secrets each configured key opens."""

    keys: tuple[str, ...]  # fingerprints of the keys, in the order configured
    derived: bool  # no key configured: the DEBUG key derived from SECRET_KEY
    opened: Counter[int] = field(default_factory=Counter)  # key position -> secrets
    latest: dict[int, int] = field(default_factory=dict)  # key position -> newest written_at
    unreadable: list[StoredSecret] = field(default_factory=list)

    @property
    def readable(self) -> int:
        return sum(self.opened.values())

    @property
    def to_rotate(self) -> int:
        return self.readable - self.opened[0]

    def name(self, position: int) -> str:
        """``key #2 (9bd01e44)``: how messages name a key."""
        if self.derived:
            return "key #1 (derived from SECRET_KEY, DEBUG only)"
        return f"key #{position + 1} ({self.keys[position]})"

    def newer_than_first(self) -> list[int]:
        """Later keys that encrypted a secret after the first key last did.

        The first key encrypts every new secret, so secrets under an older key are older
        than those under the first one. The reverse means the key that wrote last is not
        listed first: most likely the new key was put after the old one.
        """
        if not self.opened[0]:
            return []
        first = self.latest[0]
        return sorted(k for k, at in self.latest.items() if k and at > first)


def _count(census: Census, secret: StoredSecret) -> None:
    if secret.key is None:
        census.unreadable.append(secret)
        return
    census.opened[secret.key] += 1
    if secret.written_at is not None:
        census.latest[secret.key] = max(census.latest.get(secret.key, 0), secret.written_at)


def _new_census() -> Census:
    keys = tuple(crypto.fingerprint(k) for k in crypto.active_keys())
    return Census(keys=keys, derived=crypto.uses_derived_key())


def census() -> Census:
    """Count, without changing anything, the secrets each configured key opens."""
    counted = _new_census()
    for secret in survey():
        _count(counted, secret)
    return counted


def rotate_all(*, unless_misordered: bool = True) -> tuple[Census, int]:
    """Re-encrypt, with the first configured key, every secret another configured key
    opens; secrets no key opens are left unchanged.

    Returns the census taken before (under the same row locks, so a concurrent save cannot
    write an older ciphertext back) and how many secrets were re-encrypted. With
    ``unless_misordered``, nothing is changed when the census suggests the keys are listed
    in the wrong order (see ``Census.newer_than_first``).
    """
    with transaction.atomic():
        rows: list[AdAccount | Pixel] = [
            *AdAccount.objects.only(*_loaded(AdAccount)).order_by("pk").select_for_update(),
            *Pixel.objects.only(*_loaded(Pixel)).order_by("pk").select_for_update(),
        ]
        before = _new_census()
        secrets = _secrets_of(rows)
        for secret in secrets:
            _count(before, secret)
        if unless_misordered and before.newer_than_first():
            return before, 0
        changes: dict[tuple[type[Model], int], dict[str, str]] = {}
        for secret in secrets:
            if secret.key:  # readable, and not under the first key
                value = crypto.rotate(getattr(secret.owner, secret.column))
                changes.setdefault((type(secret.owner), secret.owner.pk), {})[secret.column] = value
        for (model, pk), values in changes.items():
            # An UPDATE of these columns only: no save() hooks, no updated_at bump.
            model._default_manager.filter(pk=pk).update(**values)
    return before, sum(len(values) for values in changes.values())
