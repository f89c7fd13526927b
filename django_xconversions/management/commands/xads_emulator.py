"""manage.py xads_emulator: run the local X Ads API emulator in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser, DjangoHelpFormatter

from django_xconversions.emulator.__main__ import CONFIG_FORMAT, add_arguments, serve


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, and the --config format printed as written."""


class Command(BaseCommand):
    # A separate program: the product's checks (X credentials, the key) are not its own.
    requires_system_checks: list[str] = []
    help = (
        "Run the local X Ads API emulator (conversions, web event tags, accounts, Connect\n"
        "with X) until Ctrl-C. Point XCONVERSIONS['API_BASE_URL'] and ['OAUTH_BASE_URL'] at\n"
        "the URL it prints; with --demo it prints the demo credentials, ids and the\n"
        "settings to paste."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("epilog", CONFIG_FORMAT)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        serve(argparse.Namespace(**options))
