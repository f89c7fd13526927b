"""manage.py rotate_encryption_key: re-encrypt stored tokens with the first configured key.

Keys are named by position and fingerprint (first 8 hex digits of their SHA-256), never
printed. Exit status: 0 done (or nothing to do), 1 some secret no configured key opens,
2 the keys look listed in the wrong order (nothing changed).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions.conf import CHECKS, CHECKS_ENCRYPTION, setting_path
from django_xconversions.errors import EncryptionKeyError
from django_xconversions.management.guidance import plural, require_tables
from django_xconversions.stored_secrets import Census, census, rotate_all

EXIT_UNREADABLE = 1
EXIT_MISORDERED = 2

SETTING = setting_path("ENCRYPTION_KEY")


def _secrets(count: int) -> str:
    return plural(count, "secret")


def _open(names: list[str], *, now: bool = False) -> str:
    """The keys named, with "open" agreeing: "key #2 opens", "key #2, key #3 now open"."""
    return f"{', '.join(names)}{' now' if now else ''} {'opens' if len(names) == 1 else 'open'}"


class Command(BaseCommand):
    requires_system_checks = [CHECKS, CHECKS_ENCRYPTION]
    help = (
        f"Re-encrypt every stored token with the first key of {SETTING} (set it to "
        "[new_key, old_key] first; drop the old key afterwards). --dry-run counts the "
        "secrets each key opens and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report how many secrets each configured key opens; change nothing.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "Rotate even when a later key encrypted secrets more recently than the "
                "first key (which usually means the keys are listed in the wrong order)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_tables()
        dry_run = bool(options["dry_run"])
        try:
            if dry_run:
                found, reencrypted = census(), 0
            else:
                found, reencrypted = rotate_all(unless_misordered=not options["force"])
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from exc
        self._table(found, "Dry run, nothing changed." if dry_run else "Before rotating:")
        misordered = found.newer_than_first()
        if misordered:
            self._misordered(found, misordered, stopped=not dry_run and not options["force"])
        if dry_run:
            self._dry_run_outcome(found)
        elif not misordered or options["force"]:
            self._outcome(found, reencrypted)
        if found.unreadable:
            self._unreadable(found)
        if misordered and not options["force"]:
            raise CommandError(
                "The keys look listed in the wrong order: "
                + ("nothing would be rotated." if dry_run else "nothing was changed."),
                returncode=EXIT_MISORDERED,
            )
        if found.unreadable:
            raise CommandError(
                f"{_secrets(len(found.unreadable))} cannot be decrypted with any key in "
                f"{SETTING} (listed above).",
                returncode=EXIT_UNREADABLE,
            )

    # -- report --------------------------------------------------------------------------

    def _table(self, found: Census, title: str) -> None:
        write = self.stdout.write
        write(title)
        write(
            f"{SETTING}: {plural(len(found.keys), 'key')}; the first encrypts, every key decrypts."
        )
        for position in range(len(found.keys)):
            write(f"  {found.name(position)}: opens {_secrets(found.opened[position])}")
        write(f"  no configured key: opens {_secrets(len(found.unreadable))}")

    def _only_under(self, found: Census, positions: list[int]) -> None:
        for position in positions:
            self.stdout.write(
                f"Do not remove {found.name(position)} from {SETTING}: "
                f"{_secrets(found.opened[position])} "
                f"{'opens' if found.opened[position] == 1 else 'open'} only with it."
            )

    def _misordered(self, found: Census, later: list[int], *, stopped: bool) -> None:
        names = ", ".join(found.name(p) for p in later)
        self.stdout.write(
            self.style.WARNING(
                f"{names} encrypted secrets more recently than {found.name(0)} did. New "
                "secrets are always encrypted with the first key, so the newest key is "
                "most likely not listed first: put the new key first in "
                f"{SETTING} and run this command again (--force rotates to "
                f"{found.name(0)} anyway)."
            )
        )
        if stopped:
            self.stdout.write(
                f"Nothing changed: {_secrets(found.to_rotate)} left as "
                f"{'it is' if found.to_rotate == 1 else 'they are'}."
            )
        self._only_under(found, [0, *later])

    def _dry_run_outcome(self, found: Census) -> None:
        if not found.readable:
            self.stdout.write("No readable secret stored: nothing to rotate.")
        elif found.to_rotate:
            self.stdout.write(
                f"Rotating would re-encrypt {_secrets(found.to_rotate)} with {found.name(0)}."
            )
            self._only_under(found, [p for p in range(1, len(found.keys)) if found.opened[p]])
        else:
            self._nothing_to_rotate(found)

    def _outcome(self, found: Census, reencrypted: int) -> None:
        if not found.readable:
            self.stdout.write("No readable secret stored: nothing to rotate.")
            return
        if not reencrypted:
            self._nothing_to_rotate(found)
            return
        every = "every readable secret" if found.unreadable else "every secret"
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted {_secrets(reencrypted)} with {found.name(0)}: {every} "
                f"({found.readable}) is now under {found.name(0)}."
            )
        )
        unused = [found.name(p) for p in range(1, len(found.keys))]
        if unused:
            self.stdout.write(
                f"{_open(unused, now=True)} no stored secret and can be removed from {SETTING}."
            )

    def _nothing_to_rotate(self, found: Census) -> None:
        self.stdout.write(
            f"Nothing to rotate: every secret is already under {found.name(0)}."
            if not found.unreadable
            else f"Nothing to rotate: every readable secret is already under {found.name(0)}."
        )
        others = [found.name(p) for p in range(1, len(found.keys))]
        if others:
            one = len(others) == 1
            self.stdout.write(
                self.style.WARNING(
                    f"{_open(others)} no stored secret. If "
                    f"{'it' if one else 'one of them'} is the new key you meant to rotate to, "
                    "the keys are in the wrong order: the first key is the one that "
                    "encrypts. Put the new key first and run this command again. If "
                    f"{'it is an old key, it' if one else 'they are old keys, they'} can be "
                    "removed."
                )
            )
            self._only_under(found, [0])

    def _unreadable(self, found: Census) -> None:
        self.stdout.write(
            self.style.ERROR(
                f"{_secrets(len(found.unreadable))} cannot be decrypted with any key in "
                f"{SETTING} (left unchanged):"
            )
        )
        for secret in found.unreadable:
            self.stdout.write(f"  {secret.describe()}")
        self.stdout.write(
            "Add the key they were written with to the list, or reconnect the account with X "
            "(access tokens) or re-enter the pixel token in the admin."
        )
