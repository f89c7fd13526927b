"""How an order reads as X contents (named in XCONVERSIONS["SOURCES"])."""

from __future__ import annotations

from typing import Any

from shop.models import Order


def order_contents(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "content_id": item.product.sku,
            "content_name": item.name,
            "content_price": item.price,
            "num_items": item.quantity,
        }
        for item in order.items.all()
    ]
