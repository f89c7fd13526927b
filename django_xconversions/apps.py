from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class XConversionsConfig(AppConfig):
    name = "django_xconversions"
    label = "xconversions"
    verbose_name = _("X conversions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_xconversions import checks, immediate

        checks.register()
        immediate.connect()
