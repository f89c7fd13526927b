"""One throttle for the whole API, its rate read from the settings on every request."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from django_xconversions.conf import xsettings


class XConversionsRateThrottle(SimpleRateThrottle):
    """``XCONVERSIONS["API_THROTTLE_RATE"]`` per user, or per client IP when anonymous."""

    scope = "xconversions"

    def get_rate(self) -> str | None:
        # Not REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]: users configure one dict only.
        # None or DRF's rate syntax; conf's rule raises SettingError naming the setting.
        return xsettings.API_THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str:
        user = request.user
        ident = str(user.pk) if user is not None and user.is_authenticated else None
        return self.cache_format % {
            "scope": self.scope,
            "ident": f"user:{ident}" if ident else f"ip:{self.get_ident(request)}",
        }
