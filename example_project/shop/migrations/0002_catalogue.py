"""The demo catalogue."""

from typing import Any

from django.db import migrations

PRODUCTS = [
    ("blanket", "Blanket", "12.50"),
    ("collar", "Collar", "8.00"),
    ("bowl", "Bowl", "4.25"),
]


def add_products(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    for sku, name, price in PRODUCTS:
        Product.objects.get_or_create(sku=sku, defaults={"name": name, "price": price})


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(add_products, migrations.RunPython.noop)]
