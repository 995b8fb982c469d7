from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .jobs import PurchaseNotificationJob
from .models import Buyer, DailyStatistics, Ebook, Purchase


def catalogue(request):
    ebooks = Ebook.objects.select_related("seller").order_by("title")
    return render(request, "store/catalogue.html", {"ebooks": ebooks})


def ebook(request, pk):
    return render(request, "store/ebook.html", {"ebook": get_object_or_404(Ebook.objects.select_related("seller"), pk=pk),
                                                "buyers": Buyer.objects.order_by("name")})


@require_POST
def buy(request, pk):
    book = get_object_or_404(Ebook, pk=pk)
    try:
        buyer_id = int(request.POST.get("buyer", ""))
    except ValueError:
        raise Http404("No such buyer.") from None
    buyer = get_object_or_404(Buyer, pk=buyer_id)
    with transaction.atomic():
        commission = (book.price * book.commission_rate).quantize(Decimal("0.01"), ROUND_HALF_UP)
        purchase = Purchase.objects.create(ebook=book, buyer=buyer, price=book.price, commission=commission)
        # Stored with the purchase: the job exists if and only if the purchase commits.
        PurchaseNotificationJob.perform_later(purchase)
    return redirect("purchase", pk=purchase.pk)


def purchase(request, pk):
    p = get_object_or_404(Purchase.objects.select_related("ebook", "buyer"), pk=pk)
    emails = list(p.emails.order_by("kind"))
    return render(request, "store/purchase.html", {"purchase": p, "emails": emails, "done": len(emails) == 3})


def statistics(request):
    return render(request, "store/statistics.html", {"latest": DailyStatistics.objects.first(),
                                                     "history": DailyStatistics.objects.all()[:14]})
