"""manage.py sync_tags: copy every web event tag of the active accounts from X."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions.conf import CHECKS, CHECKS_ENCRYPTION, CHECKS_X_CREDENTIALS
from django_xconversions.errors import XConversionsError
from django_xconversions.management.guidance import (
    NO_ACCOUNT,
    find,
    plural,
    require_tables,
)
from django_xconversions.models import AdAccount
from django_xconversions.tags import SyncResult, sync_account_tags


class Command(BaseCommand):
    requires_system_checks = [CHECKS, CHECKS_ENCRYPTION, CHECKS_X_CREDENTIALS]
    help = (
        "Page through the web event tags of each active account on X (deleted ones "
        "included) and upsert EventTag rows, keeping local keys and pixels. Entries X "
        "answers malformed are skipped and listed; the others are stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", help="Only this X account id (synced even when paused).")

    def handle(self, *args: Any, **options: Any) -> None:
        require_tables()
        accounts = self._accounts(options["account"])
        if not accounts:
            self.stdout.write(self._nothing_to_sync())
            return
        total = SyncResult()
        failures: list[str] = []
        for account in accounts:
            try:
                result = sync_account_tags(account)
            except XConversionsError as exc:
                # X's message only: errors never carry tokens.
                failures.append(f"{account.account_id}: {exc}")
                self.stderr.write(f"{account.account_id}: tag sync failed: {exc}")
                continue
            self.stdout.write(f"{account.account_id}: {self._counts(result)}")
            for skipped in result.skipped:
                self.stderr.write(self.style.WARNING(f"{account.account_id}: skipped {skipped}"))
            if result.without_pixel:
                self.stderr.write(
                    self.style.WARNING(
                        f"{account.account_id}: {plural(result.without_pixel, 'event tag')} "
                        f"{'has' if result.without_pixel == 1 else 'have'} no pixel: choose "
                        "one on each in the admin (Event tags); their conversions are held "
                        "until then."
                    )
                )
            total.add(result)
        if len(accounts) > 1:
            self.stdout.write(f"Total: {self._counts(total)}")
        if failures:
            raise CommandError(
                f"Tag sync failed for {plural(len(failures), 'account')}: " + "; ".join(failures)
            )

    @staticmethod
    def _accounts(account_id: str | None) -> list[AdAccount]:
        named = find(AdAccount, "account_id", account_id, "--account")
        if named is not None:
            return [named]
        return list(AdAccount.objects.filter(status=AdAccount.Status.ACTIVE).order_by("account_id"))

    @staticmethod
    def _nothing_to_sync() -> str:
        paused = list(AdAccount.objects.order_by("account_id").values_list("account_id", flat=True))
        if not paused:
            return NO_ACCOUNT
        return (
            f"No active account to sync: {', '.join(paused)} "
            f"{'is' if len(paused) == 1 else 'are'} paused. Sync one anyway with --account ID."
        )

    @staticmethod
    def _counts(result: SyncResult) -> str:
        text = (
            f"{result.created} created, {result.updated} updated, "
            f"{result.flagged_deleted} flagged deleted ({result.unchanged} unchanged)"
        )
        extras = [
            f"{len(result.skipped)} skipped (malformed)" if result.skipped else "",
            f"pixel set on {result.pixel_set}" if result.pixel_set else "",
        ]
        return "; ".join([text, *(extra for extra in extras if extra)])
