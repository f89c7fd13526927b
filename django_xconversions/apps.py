from __future__ import annotations

import contextlib

import django_stubs_ext
from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

# Generic Django classes subscriptable at run time (ModelAdmin[Model], QuerySet[Model],
# ModelForm[Model]), as django-stubs types them; before the admin and models import.
django_stubs_ext.monkeypatch()


class XConversionsConfig(AppConfig):
    name = "django_xconversions"
    label = "xconversions"
    verbose_name = _("X conversions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from django_xconversions import checks, immediate, metrics, routing, sources, tasks
        from django_xconversions.models import EventTag

        checks.register()
        # SEND_IMMEDIATELY: capture hands each send to the task runners' choice.
        immediate.connect(send=tasks.dispatch_send)
        # SOURCES that is not a list of dicts connects nothing; the system checks say so.
        with contextlib.suppress(ImproperlyConfigured):
            sources.connect()
        post_delete.connect(routing.clear_tag_cache, sender=EventTag, dispatch_uid="xconv-tags")
        # A key set or a pixel chosen routes held conversions (and clears the tag cache).
        post_save.connect(routing.on_tag_saved, sender=EventTag, dispatch_uid="xconv-tags")
        # xconversions.view_metrics: granted alone to a scraping user (reads no conversion).
        post_migrate.connect(metrics.create_permission, sender=self, dispatch_uid="xconv-metrics")
