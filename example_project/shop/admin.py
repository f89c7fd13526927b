# Without django-stubs-ext at run time the admin classes cannot take type arguments.
from django.contrib import admin

from shop.models import Customer, Order, OrderItem, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "sku", "price", "description"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["email", "phone", "created_at"]


class OrderItemInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderItem
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Marking an order paid here records its purchase too (without the visitor's click id).
    list_display = ["__str__", "customer", "status", "created_at"]
    list_filter = ["status"]
    inlines = [OrderItemInline]
