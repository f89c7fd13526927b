"""A local emulator of the X Ads API endpoints django-xconversions uses.

Faithful to X's documentation: validations and exact messages, all-or-nothing batches,
OAuth 1.0a HMAC-SHA1 signatures and the 3-legged flow (request_token, an authorize page,
access_token), X-Pixel-Token, per-account event budgets with rate-limit
headers, web event tags with cursor paging. Free of Django, so it runs anywhere:
``python -m django_xconversions.emulator --port 8765 --demo``.

Adjustable through ``EmulatorServer.faults`` (a FaultPlan, see faults.py) or the "faults"
object of ``--config`` (``--help`` shows the format): scripted or random faults ("500",
"503", "429", "401", "403", "403_client_app", "timeout", "reset"), ``only_pixels`` to
aim them at some pixels, ``delay_seconds`` of latency on every conversions answer, and
``not_found_wording`` ("parenthesized" or "plain") for the 404 of an unknown event id.
Both documented conversion_time forms are accepted (with and without milliseconds).
``EmulatorServer.conversion_requests(pixel_id, after=...)`` (and
``GET /_emulator/requests``) is the log of conversions requests: pixel_id, monotonic
arrival time, status and conversion_ids of each.
``EmulatorServer(clock=ManualClock())`` gives the emulated X a clock the caller moves
(rate-limit windows, OAuth timestamps, request-token expiry).
"""

from django_xconversions.emulator.clock import ManualClock
from django_xconversions.emulator.demo import DEMO_WORLD, demo_world, seed
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.server import EmulatorServer

__all__ = ["DEMO_WORLD", "EmulatorServer", "FaultPlan", "ManualClock", "demo_world", "seed"]
