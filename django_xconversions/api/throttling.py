"""One throttle for the whole API, its rate read from the settings on every request."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from django_xconversions.conf import setting_path, xsettings

RATE = re.compile(r"^\d+/(s|m|h|d)\w*$")


class XConversionsRateThrottle(SimpleRateThrottle):
    """``XCONVERSIONS["API_THROTTLE_RATE"]`` per user, or per client IP when anonymous."""

    scope = "xconversions"

    def get_rate(self) -> str | None:
        # Not REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]: users configure one dict only.
        rate = xsettings.API_THROTTLE_RATE
        if not rate:
            return None
        if not isinstance(rate, str) or not RATE.match(rate):
            raise ImproperlyConfigured(
                f'{setting_path("API_THROTTLE_RATE")} must be like "600/minute" '
                f"(requests/second, minute, hour or day) or None, not {rate!r}."
            )
        return rate

    def get_cache_key(self, request: Request, view: Any) -> str:
        user = request.user
        ident = str(user.pk) if user is not None and user.is_authenticated else None
        return self.cache_format % {
            "scope": self.scope,
            "ident": f"user:{ident}" if ident else f"ip:{self.get_ident(request)}",
        }
