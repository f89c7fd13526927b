from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("shop.urls")),
]

# The REST API of django-xconversions (accounts, tags, conversions, health), for staff.
if find_spec("django_xconversions.api.urls") is not None:
    urlpatterns.append(path("x/", include("django_xconversions.api.urls")))
