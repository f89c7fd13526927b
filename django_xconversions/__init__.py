"""Server-side X (Twitter) conversion tracking for Django."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["track", "track_many"]

if TYPE_CHECKING:
    from django_xconversions.tracking import track, track_many


def __getattr__(name: str) -> Any:
    # Imported lazily: tracking.py needs the app registry, this package must not.
    if name in __all__:
        from django_xconversions import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'django_xconversions' has no attribute {name!r}")
