"""Connect an AdAccount with X through the 3-legged OAuth flow (admin views).

Placeholder interface while the flow is being built: ``connect_urls`` returns the URL
patterns that AdAccountAdmin.get_urls() adds.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern


def connect_urls(model_admin: Any) -> list[URLPattern]:
    return []
