from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.landing, name="landing"),
    path("sign-up/", views.sign_up, name="sign_up"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("welcome/", views.welcome, name="welcome"),
    path("welcome/conversion/", views.welcome_conversion, name="welcome_conversion"),
    path("products/", views.products, name="products"),
    path("cart/", views.cart, name="cart"),
    path("cart/add/", views.cart_add, name="cart_add"),
    path("checkout/", views.checkout, name="checkout"),
    path("orders/<int:pk>/", views.order, name="order"),
    path("orders/<int:pk>/pay/", views.pay, name="pay"),
    path("orders/<int:pk>/conversion/", views.order_conversion, name="order_conversion"),
]
