"""The shop's own data. Nothing here knows about X: settings.XCONVERSIONS["SOURCES"] binds
Customer (sign-up) and Order (purchase, once paid) to X events."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

CURRENCY = "USD"


class Product(models.Model):
    sku = models.SlugField(unique=True)
    # Shop data, typed by staff: templates and the pixel tag must escape it.
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    """A sign-up: saving a new one records the "sign_up" conversion."""

    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email


class Order(models.Model):
    """Saving it with status "paid" (once) records the "purchase" conversion."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        PAID = "paid", "Paid"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    currency = models.CharField(max_length=3, default=CURRENCY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order {self.pk}"

    # Read by SOURCES when the order is paid; the pay view prefetches items so the three
    # of them cost one query.
    @property
    def total(self) -> Decimal:
        return sum((item.subtotal for item in self.items.all()), Decimal("0.00"))

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items.all())


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    # Name and price as sold: later catalogue edits do not rewrite past orders.
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.name}"

    @property
    def subtotal(self) -> Decimal:
        return self.price * self.quantity
