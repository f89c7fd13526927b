from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.landing, name="landing"),
    path("sign-up/", views.sign_up, name="sign_up"),
    path("welcome/", views.welcome, name="welcome"),
    path("products/", views.products, name="products"),
    path("cart/", views.cart, name="cart"),
    path("cart/add/", views.cart_add, name="cart_add"),
    path("checkout/", views.checkout, name="checkout"),
    path("orders/<int:pk>/", views.order, name="order"),
    path("orders/<int:pk>/pay/", views.pay, name="pay"),
]
