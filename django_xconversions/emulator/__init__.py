"""A local emulator of the X Ads API endpoints django-xconversions uses.

Faithful to X's documentation: validations and exact messages, all-or-nothing batches,
OAuth 1.0a HMAC-SHA1 signatures and the 3-legged flow (request_token, an authorize page,
access_token), X-Pixel-Token, per-account event budgets with rate-limit
headers, web event tags with cursor paging. Free of Django, so it runs anywhere:
``python -m django_xconversions.emulator --port 8765 --demo``.
"""

from django_xconversions.emulator.demo import DEMO_WORLD, demo_world, seed
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.server import EmulatorServer

__all__ = ["DEMO_WORLD", "EmulatorServer", "FaultPlan", "demo_world", "seed"]
