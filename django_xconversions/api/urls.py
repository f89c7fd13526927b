"""Mount with ``path("x/", include("django_xconversions.api.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_xconversions.api import views
from django_xconversions.api.metrics import MetricsView
from django_xconversions.api.schema import SchemaView

app_name = "xconversions_api"

urlpatterns = [
    path("conversions/", views.ConversionListView.as_view(), name="conversion-list"),
    path("conversions/<int:pk>/", views.ConversionDetailView.as_view(), name="conversion-detail"),
    path("event-tags/", views.EventTagListView.as_view(), name="eventtag-list"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("metrics/", MetricsView.as_view(), name="metrics"),
    path("schema/", SchemaView.as_view(), name="schema"),
]
