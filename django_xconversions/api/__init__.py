"""REST API (Django REST framework): record conversions, list them, tags and health.

Mount it with ``path("x/", include("django_xconversions.api.urls"))``. Authentication,
permissions and the throttle rate come from ``XCONVERSIONS`` and are read per request.
"""
