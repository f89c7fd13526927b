"""The shop's pages. None of them calls django-xconversions to record anything: saving a
Customer or paying an Order is enough (see SOURCES in settings), and the templates render
the browser pixel with the same conversion_id so X counts each event once. After sign-up
and payment a panel shows that conversion as the sender delivers it."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from shop import cart as session_cart
from shop import session
from shop.conversion_panel import Panel, conversion_for
from shop.forms import AddToCartForm, SignUpForm
from shop.models import Order, OrderItem, Product

FEATURED = 3  # products on the landing page


def landing(request: HttpRequest) -> HttpResponse:
    # TwclidMiddleware has already stored ?twclid=... in the session: nothing to do here.
    featured = Product.objects.all()[:FEATURED]
    return render(request, "shop/landing.html", {"products": featured})


def sign_up(request: HttpRequest) -> HttpResponse:
    if session.signed_up_customer(request) is not None:
        return redirect("shop:welcome")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        customer = form.save()  # post_save records the "sign_up" conversion
        session.sign_in(request, customer)
        return redirect("shop:welcome")
    return render(request, "shop/sign_up.html", {"form": form})


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    session.sign_out(request)
    return redirect("shop:landing")


def _sign_up_panel(request: HttpRequest) -> Panel | None:
    customer = session.signed_up_customer(request)
    if customer is None:
        return None
    refresh = reverse("shop:welcome_conversion")
    return Panel("Sign up", refresh, conversion_for(customer, "sign_up"))


def welcome(request: HttpRequest) -> HttpResponse:
    panel = _sign_up_panel(request)
    if panel is None:
        return redirect("shop:sign_up")
    context = {"panel": panel, "conversion": panel.conversion}
    return render(request, "shop/welcome.html", context)


def welcome_conversion(request: HttpRequest) -> HttpResponse:
    """The sign-up panel alone, which the welcome page polls."""
    panel = _sign_up_panel(request)
    if panel is None:
        return HttpResponse(status=404)
    return render(request, "shop/conversion_panel.html", {"panel": panel})


def products(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/products.html", {"products": Product.objects.all()})


@require_POST
def cart_add(request: HttpRequest) -> HttpResponse:
    form = AddToCartForm(request.POST)
    if form.is_valid():
        session_cart.add(request, form.cleaned_data["product"].pk, form.cleaned_data["quantity"])
    return redirect("shop:cart")


def cart(request: HttpRequest) -> HttpResponse:
    items = session_cart.lines(request)
    lines = [{"product": p, "quantity": n, "subtotal": p.price * n} for p, n in items]
    total = sum((p.price * n for p, n in items), Decimal("0.00"))
    return render(request, "shop/cart.html", {"lines": lines, "total": total})


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    customer = session.signed_up_customer(request)
    if customer is None:
        return redirect("shop:sign_up")
    lines = session_cart.lines(request)
    if not lines:
        return redirect("shop:products")
    with transaction.atomic():
        order = Order.objects.create(customer=customer)
        OrderItem.objects.bulk_create(
            OrderItem(
                order=order, product=product, name=product.name, price=product.price, quantity=n
            )
            for product, n in lines
        )
    session_cart.clear(request)
    session.remember_order(request, order.pk)
    return redirect("shop:order", pk=order.pk)


@require_POST
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    """A stand-in for a payment provider's success callback."""
    session.ensure_own_order(request, pk)
    with transaction.atomic():
        # Locked, so two clicks on "Pay" cannot both see "new"; items are prefetched
        # because SOURCES reads total, item_count and contents from them.
        order = get_object_or_404(
            Order.objects.select_for_update().prefetch_related("items__product"), pk=pk
        )
        if order.status == Order.Status.NEW:
            order.status = Order.Status.PAID
            order.save(update_fields=["status"])  # records the "purchase" conversion
    return redirect("shop:order", pk=pk)


def _purchase_panel(order: Order) -> Panel | None:
    if order.status != Order.Status.PAID:
        return None
    refresh = reverse("shop:order_conversion", args=[order.pk])
    return Panel("Purchase", refresh, conversion_for(order, "purchase"))


def order(request: HttpRequest, pk: int) -> HttpResponse:
    session.ensure_own_order(request, pk)
    order = get_object_or_404(Order.objects.prefetch_related("items"), pk=pk)
    panel = _purchase_panel(order)
    context = {
        "order": order,
        "paid": panel is not None,
        "panel": panel,
        "conversion": panel.conversion if panel else None,
    }
    return render(request, "shop/order.html", context)


def order_conversion(request: HttpRequest, pk: int) -> HttpResponse:
    """The purchase panel alone, which the confirmation page polls."""
    session.ensure_own_order(request, pk)
    panel = _purchase_panel(get_object_or_404(Order, pk=pk))
    if panel is None:
        return HttpResponse(status=404)
    return render(request, "shop/conversion_panel.html", {"panel": panel})
