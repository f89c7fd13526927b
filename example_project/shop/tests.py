"""The shop flow with Django's test client: ``manage.py test shop``.

No network: the tags are created locally, and conversions stay pending (sending them is
the sender's job, covered by the browser test against the emulator)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponse
from django.test import TestCase
from django.urls import reverse

from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from shop.models import Customer, Order, Product

TWCLID = "26l1b2rn9ndm8q7x2mcqw4lvbt"
# Shop data is untrusted: a product named with markup, made here (the catalogue shoppers
# see is neutral), must come out as text in the pages and in the pixel event.
EVIL = "</script><script>alert(1)</script>"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ShopFlowTests(TestCase):
    blanket: Product
    evil: Product

    @classmethod
    def setUpTestData(cls) -> None:
        account = AdAccount.objects.create(account_id="18ce54d4x5t", name="Demo shop")
        pixel = Pixel.objects.create(pixel_id="o8z6j", account=account)
        for remote_id, event_id, key, tag_type in [
            ("o3bk1", "ny3od", "purchase", EventTag.Type.PURCHASE),
            ("o3bk2", "ny3oe", "sign_up", EventTag.Type.SIGN_UP),
        ]:
            EventTag.objects.create(
                account=account,
                pixel=pixel,
                remote_id=remote_id,
                website_tag_id=event_id,
                key=key,
                name=key,
                type=tag_type,
            )
        cls.blanket = Product.objects.get(sku="blanket")  # from the catalogue migration
        cls.evil = Product.objects.create(sku="script-test", name=EVIL, price=Decimal("4.00"))

    def buy(self) -> Order:
        self.client.get("/", {"twclid": TWCLID})
        self.client.post(
            reverse("shop:sign_up"),
            {"email": "  Jane.Doe@Example.COM ", "phone": "(415) 555-0123"},
        )
        for product, quantity in ((self.blanket, 2), (self.evil, 1)):
            self.client.post(
                reverse("shop:cart_add"), {"product": product.pk, "quantity": quantity}
            )
        response = self.client.post(reverse("shop:checkout"))
        order = Order.objects.get()
        self.assertRedirects(response, reverse("shop:order", args=[order.pk]))
        self.assertEqual(order.status, "new")
        self.assertFalse(Conversion.objects.filter(event_tag__key="purchase").exists())
        self.client.post(reverse("shop:pay", args=[order.pk]))
        order.refresh_from_db()
        return order

    def test_sign_up_and_paid_order_record_conversions(self) -> None:
        order = self.buy()
        self.assertEqual(order.status, "paid")
        sign_up = Conversion.objects.get(event_tag__key="sign_up")
        purchase = Conversion.objects.get(event_tag__key="purchase")
        customer = Customer.objects.get()
        self.assertEqual(sign_up.conversion_id, f"shop.customer:{customer.pk}")
        self.assertEqual(purchase.conversion_id, f"shop.order:{order.pk}")
        for row in (sign_up, purchase):
            self.assertEqual(row.status, "pending")
            self.assertEqual(row.twclid, TWCLID)
            self.assertEqual(row.hashed_email, sha256("jane.doe@example.com"))
            self.assertEqual(row.hashed_phone, sha256("+14155550123"))
        self.assertEqual(purchase.value, Decimal("29.00"))
        self.assertEqual((purchase.currency, purchase.number_items), ("USD", 3))
        self.assertEqual(
            purchase.contents,
            [
                {
                    "content_id": "blanket",
                    "content_name": "Blanket",
                    "content_price": "12.50",
                    "num_items": 2,
                },
                {
                    "content_id": "script-test",
                    "content_name": EVIL,
                    "content_price": "4.00",
                    "num_items": 1,
                },
            ],
        )

    def test_confirmation_fires_the_pixel_event_with_the_same_id_escaped(self) -> None:
        order = self.buy()
        html = self.client.get(reverse("shop:order", args=[order.pk])).content.decode()
        self.assertIn(f'"conversion_id": "shop.order:{order.pk}"', html)
        self.assertIn("twq('event',\"tw-o8z6j-ny3od\"", html)
        self.assertNotIn(EVIL, html)  # neither in the page nor in the script
        self.assertIn("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;", html)
        self.assertIn("\\u003C/script\\u003E\\u003Cscript\\u003Ealert(1)", html)

    def test_paying_twice_records_one_purchase(self) -> None:
        order = self.buy()
        self.client.post(reverse("shop:pay", args=[order.pk]))
        order.save()
        self.assertEqual(Conversion.objects.filter(event_tag__key="purchase").count(), 1)

    def test_orders_are_private_to_their_session(self) -> None:
        order = self.buy()
        self.client.logout()  # a new session
        self.assertEqual(self.client.get(reverse("shop:order", args=[order.pk])).status_code, 404)
        self.assertEqual(self.client.post(reverse("shop:pay", args=[order.pk])).status_code, 404)

    def test_gpc_visitor_is_recorded_skipped_without_identifiers(self) -> None:
        self.client.get("/", {"twclid": TWCLID}, headers={"sec-gpc": "1"})
        self.client.post(
            reverse("shop:sign_up"), {"email": "a@example.com"}, headers={"sec-gpc": "1"}
        )
        row = Conversion.objects.get(event_tag__key="sign_up")
        self.assertEqual((row.status, row.hashed_email, row.twclid), ("skipped", "", ""))

    def test_menu_follows_the_session(self) -> None:
        menu = self.nav(self.client.get("/"))
        self.assertIn(">Sign up</a>", menu)
        self.assertNotIn("Sign out", menu)

        self.client.post(reverse("shop:sign_up"), {"email": "ann@example.com"})
        menu = self.nav(self.client.get(reverse("shop:products")))
        self.assertNotIn(">Sign up</a>", menu)
        self.assertIn(">Sign out</button>", menu)
        self.assertIn("ann@example.com", menu)
        # Signed up already: the sign-up page leads to the welcome page.
        self.assertRedirects(self.client.get(reverse("shop:sign_up")), reverse("shop:welcome"))

        self.assertEqual(self.client.get(reverse("shop:sign_out")).status_code, 405)
        self.assertRedirects(self.client.post(reverse("shop:sign_out")), reverse("shop:landing"))
        menu = self.nav(self.client.get("/"))
        self.assertIn(">Sign up</a>", menu)
        self.assertNotIn("Sign out", menu)
        self.assertRedirects(self.client.get(reverse("shop:welcome")), reverse("shop:sign_up"))

    @staticmethod
    def nav(response: HttpResponse) -> str:
        html = response.content.decode()
        return html[html.index("<nav") : html.index("</nav>")]

    def test_sign_up_panel_goes_from_pending_to_sent(self) -> None:
        self.client.post(reverse("shop:sign_up"), {"email": "ann@example.com"})
        row = Conversion.objects.get(event_tag__key="sign_up")
        page = self.client.get(reverse("shop:welcome")).content.decode()
        self.assertIn('id="conversion"', page)
        self.assertIn(f'<code class="conversion-id">{row.conversion_id}</code>', page)
        self.assertIn('data-status="pending"', page)
        self.assertIn('data-final="false"', page)
        self.assertIn(f'data-refresh="{reverse("shop:welcome_conversion")}"', page)
        self.assertIn("conversion-panel.js", page)

        Conversion.objects.filter(pk=row.pk).update(
            status="sent",
            sent_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            debug_id="5f0c1e9a-debug",
        )
        panel = self.client.get(reverse("shop:welcome_conversion")).content.decode()
        self.assertIn("<section", panel)
        self.assertNotIn("<html", panel)  # the panel alone, for the page to swap in
        self.assertIn('data-status="sent"', panel)
        self.assertIn('data-final="true"', panel)
        self.assertIn("X accepted it at 03:04:05.", panel)
        self.assertIn("5f0c1e9a-debug", panel)

    def test_panel_links_to_what_the_emulator_received(self) -> None:
        self.client.post(reverse("shop:sign_up"), {"email": "ann@example.com"})
        row = Conversion.objects.get(event_tag__key="sign_up")
        emulator = {**settings.XCONVERSIONS, "API_BASE_URL": "http://127.0.0.1:8766"}
        with self.settings(XCONVERSIONS=emulator):
            panel = self.client.get(reverse("shop:welcome_conversion")).content.decode()
        link = (
            f"http://127.0.0.1:8766/_emulator/pixels/o8z6j?conversion_id={quote(row.conversion_id)}"
        )
        self.assertIn(f'href="{link}"', panel)
        x = {**settings.XCONVERSIONS, "API_BASE_URL": "https://ads-api.x.com"}
        with self.settings(XCONVERSIONS=x):
            panel = self.client.get(reverse("shop:welcome_conversion")).content.decode()
        self.assertNotIn("_emulator", panel)  # X itself has no such page

    def test_purchase_panel_only_for_a_paid_order_of_this_session(self) -> None:
        order = self.buy()
        url = reverse("shop:order_conversion", args=[order.pk])
        panel = self.client.get(url).content.decode()
        self.assertIn(f'<code class="conversion-id">shop.order:{order.pk}</code>', panel)
        self.assertIn('<dd class="event">Purchase</dd>', panel)
        Order.objects.filter(pk=order.pk).update(status="new")
        self.assertEqual(self.client.get(url).status_code, 404)
        self.client.logout()  # a new session
        self.assertEqual(self.client.get(url).status_code, 404)


class CatalogueTests(TestCase):
    def test_the_catalogue_shoppers_see_is_neutral(self) -> None:
        names = list(Product.objects.values_list("name", flat=True))
        self.assertEqual(len(names), 6)
        self.assertFalse([name for name in names if set(name) & set("<>&\"'")])
        page = self.client.get(reverse("shop:products")).content.decode()
        self.assertIn('<h3 class="name">Dog bed</h3>', page)
        self.assertIn('<p class="price">$39.00</p>', page)
        self.assertIn("Orthopaedic foam", page)
        self.assertIn("/static/shop/shop.css", page)
        self.assertNotIn("<style", page)  # the stylesheet is a static file
