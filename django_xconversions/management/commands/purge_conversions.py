"""manage.py purge_conversions: delete sent, failed and skipped conversions after N days."""

from __future__ import annotations

import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions import retention
from django_xconversions.conf import CHECKS, setting_path
from django_xconversions.management.guidance import plural, require_tables


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
        require_tables()
        days = options["older_than"]
        # NaN and infinity parse as floats too; neither is an age.
        if days is not None and not (math.isfinite(days) and days >= 0):
            raise CommandError(
                f"--older-than must be a number of days of at least 0, not {days:g}."
            )
        try:
            result = retention.purge(days, dry_run=options["dry_run"])
        except OverflowError:
            source = "--older-than" if days is not None else setting_path("RETENTION_DAYS")
            raise CommandError(
                f"{source} is too many days: the cutoff would fall before the year 1."
            ) from None
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} {plural(result.conversions, 'conversion')} and "
            f"{plural(result.attempts, 'delivery attempt')} created before "
            f"{result.cutoff:%Y-%m-%d %H:%M} UTC."
        )
