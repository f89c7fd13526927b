"""Products get a short description; the catalogue grows to a shop's worth of items.

Databases made before this held a product named with markup (an escaping test that
belongs in the tests, not in what shoppers see): it is removed, or renamed when orders
refer to it (they keep the name it was sold under).
"""

from typing import Any

from django.db import migrations, models

DESCRIPTIONS = {
    "blanket": "Soft fleece, machine washable. 100 x 70 cm.",
    "collar": "Adjustable nylon collar with a quick-release buckle.",
    "bowl": "Stainless steel, non-slip base. Holds 750 ml.",
}
NEW_PRODUCTS = [
    ("leash", "Leash", "14.00", "1.8 m braided rope with a padded handle."),
    ("chew-toy", "Chew toy", "6.50", "Natural rubber, tough enough for puppies' teeth."),
    ("dog-bed", "Dog bed", "39.00", "Orthopaedic foam with a removable washable cover."),
]
RETIRED_SKU = "script-test"


def update_catalogue(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    OrderItem = apps.get_model("shop", "OrderItem")
    for sku, description in DESCRIPTIONS.items():
        Product.objects.filter(sku=sku, description="").update(description=description)
    for sku, name, price, description in NEW_PRODUCTS:
        Product.objects.get_or_create(
            sku=sku, defaults={"name": name, "price": price, "description": description}
        )
    retired = Product.objects.filter(sku=RETIRED_SKU)
    if OrderItem.objects.filter(product__in=retired).exists():
        retired.update(name="Retired product")
    else:
        retired.delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_catalogue")]
    operations = [
        migrations.AddField(
            model_name="product",
            name="description",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.RunPython(update_catalogue, migrations.RunPython.noop),
    ]
