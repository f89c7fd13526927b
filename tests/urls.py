from django.contrib import admin
from django.urls import include, path

from tests.shop import views as shop

urlpatterns = [path("admin/", admin.site.urls)]
urlpatterns += [path("x/", include("django_xconversions.api.urls"))]
urlpatterns += [
    path("shop/", shop.landing),
    path("shop/sign-up/", shop.sign_up),
    path("shop/async-sign-up/", shop.async_sign_up),
    path("shop/orders/", shop.place_order),
    path("shop/orders/<int:pk>/pay/", shop.pay),
    path("shop/orders/<int:pk>/thanks/", shop.thanks),
]
