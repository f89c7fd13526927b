"""Views of the test shop: the requests a visitor makes, for capture tests."""

from __future__ import annotations

from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt

from django_xconversions import track
from django_xconversions.models import Conversion
from tests.shop.models import Member, Order


def landing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("welcome")


@csrf_exempt
def sign_up(request: HttpRequest) -> HttpResponse:
    member = Member.objects.create(email=request.POST["email"], phone=request.POST.get("phone", ""))
    return HttpResponse(str(member.pk))


@csrf_exempt
def place_order(request: HttpRequest) -> HttpResponse:
    order = Order.objects.create(
        email=request.POST.get("email", ""),
        total=Decimal(request.POST.get("total", "10.00")),
        product_name=request.POST.get("product_name", ""),
        quantity=int(request.POST.get("quantity", "1")),
    )
    return HttpResponse(str(order.pk))


@csrf_exempt
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    with transaction.atomic():
        order = get_object_or_404(Order.objects.select_for_update(), pk=pk)
        order.status = "paid"
        order.save()
    return HttpResponse("paid")


def thanks(request: HttpRequest, pk: int) -> HttpResponse:
    conversion = (
        Conversion.objects.select_related("pixel", "event_tag")
        .filter(conversion_id=f"shop.order:{pk}")
        .first()
    )
    return render(request, "shop/thanks.html", {"conversion": conversion})


async def async_sign_up(request: HttpRequest) -> HttpResponse:
    # The request context set by the middleware reaches ORM code run from async views.
    row = await sync_to_async(track)("sign_up", email=request.GET["email"])
    return HttpResponse(f"{row.pk} {row.twclid}")
