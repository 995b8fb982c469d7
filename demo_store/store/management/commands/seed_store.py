"""``manage.py seed_store``: a few sellers, ebooks and buyers, and the demo superuser. Idempotent."""
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from demo_store.store.factories import BuyerFactory, EbookFactory, SellerFactory

CATALOGUE = [
    ("Ada Lovelace", [("Notes on the Analytical Engine", "12.00"), ("Poetical Science", "8.50")]),
    ("Grace Hopper", [("Debugging for Beginners", "15.00"), ("Compilers Without Tears", "19.90")]),
    ("Alan Turing", [("Computable Numbers, Gently", "9.99")]),
]
BUYERS = [("Marie Curie", "marie@readers.example"), ("Lise Meitner", "lise@readers.example"),
          ("Emmy Noether", "emmy@readers.example")]


class Command(BaseCommand):
    help = "Fill the demo store (idempotent) and create the demo superuser admin/admin."

    def handle(self, *args, **options):
        for seller_name, books in CATALOGUE:
            seller = SellerFactory(name=seller_name)
            for title, price in books:
                EbookFactory(title=title, seller=seller, price=Decimal(price),
                             description=f"{title}, by {seller_name}.")
        for name, email in BUYERS:
            BuyerFactory(name=name, email=email)
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@ebooks.example", "admin")
        self.stdout.write("Seeded: 3 sellers, 5 ebooks, 3 buyers; superuser admin / admin")
