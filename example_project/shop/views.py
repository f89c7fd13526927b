"""The shop's pages. None of them calls django-xconversions directly: saving a Customer
or paying an Order is enough (see SOURCES in settings), and the templates render the
browser pixel with the same conversion_id so X counts each event once."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from django_xconversions.models import Conversion
from shop import cart as session_cart
from shop.forms import AddToCartForm, SignUpForm
from shop.models import Customer, Order, OrderItem, Product

CUSTOMER_KEY = "customer_id"
ORDERS_KEY = "order_ids"


def conversion_for(instance: Customer | Order, event: str) -> Conversion | None:
    """The conversion a SOURCES entry recorded for ``instance`` (looked up by source)."""
    return (
        Conversion.objects.select_related("pixel", "event_tag")
        .filter(
            source_type=ContentType.objects.get_for_model(instance),
            source_id=str(instance.pk),
            event_tag__key=event,
        )
        .first()
    )


def signed_up_customer(request: HttpRequest) -> Customer | None:
    pk = request.session.get(CUSTOMER_KEY)
    return Customer.objects.filter(pk=pk).first() if pk else None


def landing(request: HttpRequest) -> HttpResponse:
    # TwclidMiddleware has already stored ?twclid=... in the session: nothing to do here.
    return render(request, "shop/landing.html")


def sign_up(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        customer = form.save()  # post_save records the "sign_up" conversion
        request.session[CUSTOMER_KEY] = customer.pk
        return redirect("shop:welcome")
    return render(request, "shop/sign_up.html", {"form": form})


def welcome(request: HttpRequest) -> HttpResponse:
    customer = signed_up_customer(request)
    if customer is None:
        return redirect("shop:sign_up")
    conversion = conversion_for(customer, "sign_up")
    return render(request, "shop/welcome.html", {"customer": customer, "conversion": conversion})


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
    signed_up = CUSTOMER_KEY in request.session
    return render(
        request, "shop/cart.html", {"lines": lines, "total": total, "signed_up": signed_up}
    )


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    customer = signed_up_customer(request)
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
    request.session[ORDERS_KEY] = [*request.session.get(ORDERS_KEY, []), order.pk]
    return redirect("shop:order", pk=order.pk)


def _own_order(request: HttpRequest, pk: int) -> None:
    # Orders are shown only to the browser session that placed them.
    if pk not in request.session.get(ORDERS_KEY, []):
        raise Http404("No such order.")


@require_POST
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    """A stand-in for a payment provider's success callback."""
    _own_order(request, pk)
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


def order(request: HttpRequest, pk: int) -> HttpResponse:
    _own_order(request, pk)
    order = get_object_or_404(Order.objects.prefetch_related("items"), pk=pk)
    paid = order.status == Order.Status.PAID
    conversion = conversion_for(order, "purchase") if paid else None
    return render(
        request, "shop/order.html", {"order": order, "paid": paid, "conversion": conversion}
    )
