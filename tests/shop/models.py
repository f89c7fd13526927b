"""A minimal shop used as the source of conversions in tests."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=20, default="new")
    quantity = models.PositiveIntegerField(default=1)
    product_name = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"Order {self.pk}"


class Member(models.Model):
    """A sign-up."""

    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)

    def __str__(self) -> str:
        return f"Member {self.pk}"
