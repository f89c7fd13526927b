"""manage.py xads_emulator: run the local X Ads API emulator in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_xconversions.emulator.__main__ import add_arguments, serve


class Command(BaseCommand):
    help = (
        "Run the local X Ads API emulator (conversions, web event tags, accounts) until "
        "Ctrl-C. Point XCONVERSIONS['API_BASE_URL'] at the URL it prints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        serve(argparse.Namespace(**options))
