"""The demo ebook store: sellers sell ebooks to buyers; every purchase notifies by email."""
from decimal import Decimal

from django.db import models


class Seller(models.Model):
    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField()

    def __str__(self):
        return self.name


class Ebook(models.Model):
    title = models.CharField(max_length=200, unique=True)
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="ebooks")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    commission_rate = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0.700"),
                                          help_text="The seller's share of the price (0-1).")
    description = models.TextField(blank=True)

    def __str__(self):
        return self.title


class Buyer(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(unique=True)

    def __str__(self):
        return self.name


class Purchase(models.Model):
    ebook = models.ForeignKey(Ebook, on_delete=models.PROTECT, related_name="purchases")
    buyer = models.ForeignKey(Buyer, on_delete=models.PROTECT, related_name="purchases")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    commission = models.DecimalField(max_digits=8, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"{self.buyer} bought {self.ebook}"


class SentEmail(models.Model):
    """One row per (purchase, kind): the guard that keeps a retried job from mailing twice."""
    KINDS = [("commission", "Commission to the seller"), ("receipt", "Receipt to the buyer"),
             ("sales", "Sales update to the store")]
    purchase = models.ForeignKey(Purchase, on_delete=models.CASCADE, related_name="emails")
    kind = models.CharField(max_length=20, choices=KINDS)
    to = models.EmailField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["purchase", "kind"], name="store_email_once")]


class DailyStatistics(models.Model):
    day = models.DateField(unique=True)
    total_sales = models.IntegerField()
    revenue = models.DecimalField(max_digits=12, decimal_places=2)
    commissions = models.DecimalField(max_digits=12, decimal_places=2)
    active_sellers = models.IntegerField()
    popular = models.JSONField(default=list, help_text="[[title, sales], ...] best first")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "daily statistics"
