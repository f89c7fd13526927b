from typing import Any

from django.http import HttpRequest

from shop import cart


def shop(request: HttpRequest) -> dict[str, Any]:
    return {"cart_count": sum(cart.read(request).values())}
