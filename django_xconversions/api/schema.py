"""The API's OpenAPI schema: only this app's endpoints, wherever the project mounts them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView

from django_xconversions.api.permissions import SettingsAccessMixin
from django_xconversions.api.views import XConversionsAPIView
from django_xconversions.models import Conversion

TITLE = "django-xconversions API"


class XConversionsSchemaGenerator(SchemaGenerator):
    """Paths come from the project's URLconf (so they carry its prefix), filtered to ours:
    the project's other DRF views may use another schema class."""

    def _initialise_endpoints(self) -> None:
        super()._initialise_endpoints()  # type: ignore[no-untyped-call]
        endpoints: list[tuple[Any, ...]] = list(self.endpoints or [])
        self.endpoints = [  # (path, path_regex, method, callback)
            endpoint
            for endpoint in endpoints
            if issubclass(getattr(endpoint[3], "cls", object), XConversionsAPIView)
        ]

    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = super().get_schema(  # type: ignore[no-untyped-call]
            request=request, public=public
        )
        if not schema["info"].get("title"):
            schema["info"]["title"] = TITLE
        return schema


class SchemaView(SettingsAccessMixin, SpectacularAPIView):
    """Served to the same users as the API."""

    generator_class = XConversionsSchemaGenerator
    # Not read: DjangoModelPermissions asks for the view permission of conversions.
    queryset = Conversion.objects.none()
