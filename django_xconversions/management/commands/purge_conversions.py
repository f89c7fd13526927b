"""manage.py purge_conversions: delete sent, failed and skipped conversions after N days."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions import retention
from django_xconversions.conf import CHECKS, setting_path


class Command(BaseCommand):
    # Uses neither the encryption key nor X's credentials: their warnings are not its own.
    requires_system_checks = [CHECKS]
    help = (
        "Delete sent, failed and skipped conversions (never pending ones) and delivery "
        "attempts older than --older-than days."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="DAYS",
            help=f"Age in days (default: {setting_path('RETENTION_DAYS')}).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = retention.purge(options["older_than"], dry_run=options["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} {result.conversions} conversions and {result.attempts} delivery "
            f"attempts created before {result.cutoff:%Y-%m-%d %H:%M} UTC."
        )
