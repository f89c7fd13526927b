from typing import Any

from django.http import HttpRequest

from shop import cart
from shop.session import signed_up_customer


def shop(request: HttpRequest) -> dict[str, Any]:
    # The menu follows the session: "Sign up" until the visitor has, then "Sign out".
    return {
        "cart_count": sum(cart.read(request).values()),
        "customer": signed_up_customer(request),
    }
