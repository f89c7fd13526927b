"""The cart lives in the session as {product pk (as text): quantity}."""

from __future__ import annotations

from django.http import HttpRequest

from shop.models import Product

SESSION_KEY = "cart"


def read(request: HttpRequest) -> dict[str, int]:
    stored = request.session.get(SESSION_KEY, {}) if hasattr(request, "session") else {}
    return dict(stored) if isinstance(stored, dict) else {}


def add(request: HttpRequest, product_pk: int, quantity: int) -> None:
    items = read(request)
    items[str(product_pk)] = min(items.get(str(product_pk), 0) + quantity, 99)
    request.session[SESSION_KEY] = items


def lines(request: HttpRequest) -> list[tuple[Product, int]]:
    """(product, quantity) in the order they were added; gone products are dropped."""
    quantities = read(request)
    catalogue = Product.objects.in_bulk([int(pk) for pk in quantities])
    return [(catalogue[int(pk)], n) for pk, n in quantities.items() if int(pk) in catalogue]


def clear(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)
