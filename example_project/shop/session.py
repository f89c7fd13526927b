"""What the shop keeps in the visitor's session: who signed up, and their orders."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from shop.models import Customer

CUSTOMER_KEY = "customer_id"
ORDERS_KEY = "order_ids"


def signed_up_customer(request: HttpRequest) -> Customer | None:
    session = getattr(request, "session", None)
    pk = session.get(CUSTOMER_KEY) if session is not None else None
    return Customer.objects.filter(pk=pk).first() if pk else None


def sign_in(request: HttpRequest, customer: Customer) -> None:
    request.session[CUSTOMER_KEY] = customer.pk


def sign_out(request: HttpRequest) -> None:
    """Forget the customer and their orders (which were private to this session)."""
    request.session.pop(CUSTOMER_KEY, None)
    request.session.pop(ORDERS_KEY, None)


def remember_order(request: HttpRequest, pk: int) -> None:
    request.session[ORDERS_KEY] = [*request.session.get(ORDERS_KEY, []), pk]


def ensure_own_order(request: HttpRequest, pk: int) -> None:
    # Orders are shown only to the browser session that placed them.
    if pk not in request.session.get(ORDERS_KEY, []):
        raise Http404("No such order.")
