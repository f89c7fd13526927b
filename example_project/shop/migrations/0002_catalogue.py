"""The demo catalogue. One product name is markup on purpose: shop data is untrusted, and
the pages and the pixel event must show it as text, never run it."""

from typing import Any

from django.db import migrations

PRODUCTS = [
    ("blanket", "Blanket", "12.50"),
    ("collar", "Collar", "8.00"),
    ("bowl", "Bowl", "4.25"),
    ("script-test", "</script><script>alert(1)</script>", "4.00"),
]


def add_products(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    for sku, name, price in PRODUCTS:
        Product.objects.get_or_create(sku=sku, defaults={"name": name, "price": price})


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(add_products, migrations.RunPython.noop)]
