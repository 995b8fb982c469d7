"""factory-boy factories for the store (tests and seed_store)."""
from decimal import Decimal

import factory

from .models import Buyer, Ebook, Purchase, Seller


class SellerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Seller
        django_get_or_create = ["name"]

    name = factory.Sequence(lambda n: f"Seller {n}")
    email = factory.LazyAttribute(lambda o: f"{o.name.lower().replace(' ', '.')}@authors.example")


class EbookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ebook
        django_get_or_create = ["title"]

    title = factory.Sequence(lambda n: f"Ebook {n}")
    seller = factory.SubFactory(SellerFactory)
    price = Decimal("9.99")
    commission_rate = Decimal("0.700")


class BuyerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Buyer
        django_get_or_create = ["email"]

    name = factory.Sequence(lambda n: f"Buyer {n}")
    email = factory.LazyAttribute(lambda o: f"{o.name.lower().replace(' ', '.')}@readers.example")


class PurchaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Purchase

    ebook = factory.SubFactory(EbookFactory)
    buyer = factory.SubFactory(BuyerFactory)
    price = factory.LazyAttribute(lambda o: o.ebook.price)
    commission = factory.LazyAttribute(lambda o: (o.ebook.price * o.ebook.commission_rate).quantize(Decimal("0.01")))
