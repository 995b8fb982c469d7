"""The demo store's jobs (autodiscovered by djjobs)."""
import datetime as dt
import smtplib
import time
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage, send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from djjobs import DeserializationError, Job, discard_on, retry_on

from .models import DailyStatistics, Purchase, SentEmail

STORE_EMAIL = "owner@ebooks.example"


@retry_on(smtplib.SMTPException, ConnectionError, wait="polynomially_longer", attempts=8)
@discard_on(DeserializationError)
class PurchaseNotificationJob(Job):
    """Mails the seller their commission, the buyer a receipt, the store a sales update.

    Idempotent per email: each send happens in a transaction with the insert of its
    (purchase, kind) row, guarded by a unique constraint. A retry or a second delivery
    skips what was sent; a failed send rolls its row back, so it is sent on retry.
    """
    queue_name = "mailers"

    def perform(self, purchase: Purchase) -> int:
        sent = 0
        for kind, to, subject, body in self.emails(purchase):
            sent += self.send_once(purchase, kind, to, subject, body)
            time.sleep(getattr(settings, "DEMO_EMAIL_PAUSE", 0))  # lets the tests kill a worker between two emails
        return sent

    def emails(self, purchase: Purchase):
        ebook, buyer = purchase.ebook, purchase.buyer
        # The running totals of the purchase's day up to and including it: the same figures
        # however late (or how often) the job runs.
        day = timezone.localtime(purchase.created_at).date()
        day_sales = Purchase.objects.filter(created_at__date=day, pk__lte=purchase.pk).aggregate(
            n=Count("id"), revenue=Sum("price"))
        yield ("commission", ebook.seller.email, f"You sold {ebook.title}",
               f"{buyer.name} bought {ebook.title} for {purchase.price}. Your commission: {purchase.commission}.")
        yield ("receipt", buyer.email, f"Your receipt for {ebook.title}",
               f"Thank you for buying {ebook.title}. You paid {purchase.price}. Purchase #{purchase.pk}.")
        yield ("sales", STORE_EMAIL, f"Sale: {ebook.title}",
               f"{day} so far: {day_sales['n']} sale(s), revenue {money(day_sales['revenue'])}.")

    def send_once(self, purchase: Purchase, kind: str, to: str, subject: str, body: str) -> int:
        try:
            with transaction.atomic():
                SentEmail.objects.create(purchase=purchase, kind=kind, to=to)
                EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to],
                             headers={"Message-ID": f"<purchase-{purchase.pk}-{kind}@ebooks.example>"}).send()
        except IntegrityError:
            return 0  # sent by an earlier run
        return 1


class DailyStatisticsJob(Job):
    """Statistics of one day (the day before the cron tick it belongs to; yesterday when
    run by hand), stored once per day (a re-run replaces the row) and mailed to the store."""
    queue_name = "low"

    def perform(self, day: dt.date | None = None) -> dict:
        if day is None:
            # The tick's instant read in the store's time zone (TIME_ZONE, which is also the
            # cron entry's time zone), so the day does not depend on the worker's clock zone.
            tick = self.scheduled_at or timezone.now()
            day = timezone.localtime(tick).date() - dt.timedelta(days=1)
        stats = compute_statistics(day)
        DailyStatistics.objects.update_or_create(day=day, defaults=stats)
        send_mail(f"Store statistics for {day}", "\n".join(f"{k}: {v}" for k, v in stats.items()),
                  settings.DEFAULT_FROM_EMAIL, [STORE_EMAIL])
        return {"day": day.isoformat(), **{k: str(v) for k, v in stats.items()}}


def compute_statistics(day: dt.date) -> dict:
    purchases = Purchase.objects.filter(created_at__date=day)
    totals = purchases.aggregate(n=Count("id"), revenue=Sum("price"), commissions=Sum("commission"))
    popular = list(purchases.values("ebook__title").annotate(n=Count("id")).order_by("-n", "ebook__title")[:5])
    return {"total_sales": totals["n"], "revenue": money(totals["revenue"]),
            "commissions": money(totals["commissions"]),
            "active_sellers": purchases.values("ebook__seller").distinct().count(),
            "popular": [[row["ebook__title"], row["n"]] for row in popular]}


def money(amount: Decimal | None) -> Decimal:
    """Two decimal places (SQLite's SUM drops them: 10.00 + 0 -> 10)."""
    return (amount or Decimal("0")).quantize(Decimal("0.01"))
