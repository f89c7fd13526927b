"""How the test shop's orders read as X contents (a SOURCES callable)."""

from __future__ import annotations

from typing import Any


def order_contents(order: Any) -> list[dict[str, Any]]:
    return [
        {
            "content_id": f"sku-{order.pk}",
            "content_name": order.product_name,
            "content_price": order.total,
            "num_items": order.quantity,
        }
    ]
