"""The demo ebook store end to end: purchase -> notification job after commit, three
emails exactly once, retries and discards, daily statistics, pages, seeding."""
import datetime as dt
import smtplib
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from demo_store.store import jobs as store_jobs
from demo_store.store.factories import BuyerFactory, EbookFactory, PurchaseFactory, SellerFactory
from demo_store.store.jobs import DailyStatisticsJob, PurchaseNotificationJob, compute_statistics
from demo_store.store.models import DailyStatistics, Purchase, SentEmail
from djjobs.adapters import use_adapter
from djjobs.adapters.database import DatabaseAdapter
from djjobs.envelope import Envelope
from djjobs.execution import DISCARDED, RETRY, SUCCEEDED, execute
from djjobs.models import JobRow
from djjobs.testing import (assert_enqueued_jobs, assert_enqueued_with, assert_no_enqueued_jobs, drain_enqueued_jobs,
                            perform_enqueued_jobs)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def shop(db):
    seller = SellerFactory(name="Ada", email="ada@authors.example")
    book = EbookFactory(title="Engines", seller=seller, price=Decimal("10.00"), commission_rate=Decimal("0.700"))
    buyer = BuyerFactory(name="Marie", email="marie@readers.example")
    return book, buyer


def buy(client, book, buyer):
    return client.post(reverse("buy", args=[book.pk]), {"buyer": buyer.pk})


@pytest.mark.django_db(transaction=True)
def test_a_purchase_enqueues_one_notification_after_commit(client, shop, enqueued_jobs, monkeypatch):
    book, buyer = shop
    original = PurchaseNotificationJob.perform_later.__func__
    seen_in_transaction = []

    def spy(cls, *args, **kwargs):
        job = original(cls, *args, **kwargs)
        seen_in_transaction.append((transaction.get_connection().in_atomic_block, len(enqueued_jobs.enqueued)))
        return job

    monkeypatch.setattr(PurchaseNotificationJob, "perform_later", classmethod(spy))
    response = buy(client, book, buyer)
    assert seen_in_transaction == [(True, 0)]  # called inside the view's atomic block, stored only on commit
    purchase = Purchase.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("purchase", args=[purchase.pk])
    assert purchase.commission == Decimal("7.00")
    assert_enqueued_jobs(1)
    assert_enqueued_with(job=PurchaseNotificationJob, args=[purchase], queue="mailers")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_purchase_leaves_no_job(client, shop, enqueued_jobs, monkeypatch):
    book, buyer = shop
    original = PurchaseNotificationJob.perform_later.__func__

    def enqueue_then_fail(cls, *args, **kwargs):
        original(cls, *args, **kwargs)
        raise RuntimeError("payment provider said no")

    monkeypatch.setattr(PurchaseNotificationJob, "perform_later", classmethod(enqueue_then_fail))
    client.raise_request_exception = True
    with pytest.raises(RuntimeError):
        buy(client, book, buyer)
    assert Purchase.objects.count() == 0
    assert_no_enqueued_jobs()


@pytest.mark.django_db(transaction=True)
def test_with_the_database_adapter_the_job_row_commits_with_the_purchase(client, shop, monkeypatch):
    book, buyer = shop
    with use_adapter(DatabaseAdapter()):
        buy(client, book, buyer)
        assert JobRow.objects.filter(job_name=PurchaseNotificationJob.job_name, state="ready").count() == 1
        original = PurchaseNotificationJob.perform_later.__func__
        monkeypatch.setattr(PurchaseNotificationJob, "perform_later", classmethod(
            lambda cls, *a, **k: (original(cls, *a, **k), (_ for _ in ()).throw(RuntimeError("rollback")))))
        client.raise_request_exception = True
        with pytest.raises(RuntimeError):
            buy(client, book, buyer)
    assert JobRow.objects.count() == 1 and Purchase.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_purchase_then_the_worker_sends_three_emails_once(client, shop, enqueued_jobs):
    book, buyer = shop
    buy(client, book, buyer)
    assert mail.outbox == []  # the buyer's page does not wait for the emails
    assert drain_enqueued_jobs() == 1
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@authors.example", "marie@readers.example",
                                                    store_jobs.STORE_EMAIL]
    with perform_enqueued_jobs():  # delivered again: nothing more is sent
        PurchaseNotificationJob.perform_later(Purchase.objects.get())
    assert len(mail.outbox) == 3 and SentEmail.objects.count() == 3
    assert drain_enqueued_jobs() == 0


def test_the_sales_update_carries_the_running_totals_of_its_purchase(shop):
    book, buyer = shop
    first, second = PurchaseFactory(ebook=book, buyer=buyer), PurchaseFactory(ebook=book, buyer=buyer)
    notify(second)
    notify(first)  # run late, after the second purchase: still its own figures
    sales = {m.extra_headers["Message-ID"]: m.body for m in mail.outbox if m.to == [store_jobs.STORE_EMAIL]}
    today = timezone.localdate()
    assert sales[f"<purchase-{first.pk}-sales@ebooks.example>"] == f"{today} so far: 1 sale(s), revenue 10.00."
    assert sales[f"<purchase-{second.pk}-sales@ebooks.example>"] == f"{today} so far: 2 sale(s), revenue 20.00."


def notify(purchase):
    return execute(Envelope.decode(PurchaseNotificationJob(purchase).to_envelope().encode()))


def test_the_job_sends_three_emails_once(shop):
    book, buyer = shop
    purchase = PurchaseFactory(ebook=book, buyer=buyer)
    assert notify(purchase).result == 3
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@authors.example", "marie@readers.example",
                                                    store_jobs.STORE_EMAIL]
    receipt = next(m for m in mail.outbox if m.to == ["marie@readers.example"])
    assert "Engines" in receipt.subject and "10.00" in receipt.body
    assert notify(purchase).result == 0  # a second delivery sends nothing
    assert len(mail.outbox) == 3 and SentEmail.objects.count() == 3


def test_a_failed_smtp_send_is_retried_without_resending(shop, monkeypatch):
    book, buyer = shop
    purchase = PurchaseFactory(ebook=book, buyer=buyer)
    real_send = store_jobs.EmailMessage.send

    def flaky_send(message, *args, **kwargs):
        if message.to == ["marie@readers.example"]:
            raise smtplib.SMTPServerDisconnected("connection lost")
        return real_send(message, *args, **kwargs)

    monkeypatch.setattr(store_jobs.EmailMessage, "send", flaky_send)
    outcome = notify(purchase)
    assert outcome.kind == RETRY and outcome.envelope.error["class"] == "smtplib.SMTPServerDisconnected"
    assert [m.to for m in mail.outbox] == [["ada@authors.example"]]
    assert list(SentEmail.objects.values_list("kind", flat=True)) == ["commission"]
    monkeypatch.setattr(store_jobs.EmailMessage, "send", real_send)
    assert execute(outcome.envelope).kind == SUCCEEDED
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@authors.example", "marie@readers.example",
                                                    store_jobs.STORE_EMAIL]


def test_a_deleted_purchase_is_discarded(shop):
    book, buyer = shop
    purchase = PurchaseFactory(ebook=book, buyer=buyer)
    envelope = PurchaseNotificationJob(purchase).to_envelope()
    purchase.delete()
    assert execute(envelope).kind == DISCARDED and mail.outbox == []


@pytest.fixture
def seeded_day(db):
    """Purchases on 2026-05-01 (Berlin) and one on the day after."""
    a, b = SellerFactory(name="A"), SellerFactory(name="B")
    books = [EbookFactory(title="X", seller=a, price=Decimal("10.00")),
             EbookFactory(title="Y", seller=a, price=Decimal("4.50")),
             EbookFactory(title="Z", seller=b, price=Decimal("20.00"))]
    buyer = BuyerFactory()
    plan = [(books[0], 10), (books[0], 11), (books[0], 23), (books[1], 12), (books[2], 15)]
    for book, hour in plan:
        p = PurchaseFactory(ebook=book, buyer=buyer)
        Purchase.objects.filter(pk=p.pk).update(created_at=dt.datetime(2026, 5, 1, hour, 30, tzinfo=BERLIN))
    late = PurchaseFactory(ebook=books[2], buyer=buyer)
    Purchase.objects.filter(pk=late.pk).update(created_at=dt.datetime(2026, 5, 2, 0, 30, tzinfo=BERLIN))
    return plan


def test_daily_statistics_match_an_independent_count(seeded_day):
    expected_revenue = sum(book.price for book, _ in seeded_day)
    expected_commissions = sum((book.price * book.commission_rate).quantize(Decimal("0.01")) for book, _ in seeded_day)
    DailyStatisticsJob.perform_now(dt.date(2026, 5, 1))
    stats = DailyStatistics.objects.get()
    assert (stats.day, stats.total_sales, stats.revenue, stats.commissions, stats.active_sellers) == (
        dt.date(2026, 5, 1), 5, expected_revenue, expected_commissions, 2)
    assert stats.popular[0] == ["X", 3] and len(stats.popular) == 3
    assert mail.outbox[-1].subject == "Store statistics for 2026-05-01"


def test_rerunning_replaces_the_days_row(seeded_day):
    DailyStatisticsJob.perform_now(dt.date(2026, 5, 1))
    Purchase.objects.filter(created_at__date=dt.date(2026, 5, 1)).first().delete()
    DailyStatisticsJob.perform_now(dt.date(2026, 5, 1))
    assert DailyStatistics.objects.count() == 1 and DailyStatistics.objects.get().total_sales == 4


def test_the_cron_tick_decides_the_day(seeded_day):
    job = DailyStatisticsJob()
    job.scheduled_at = dt.datetime(2026, 5, 2, 0, 0, tzinfo=BERLIN)
    env = Envelope.decode(job.to_envelope().encode())
    assert execute(env).result["day"] == "2026-05-01"
    assert compute_statistics(dt.date(2026, 5, 2))["total_sales"] == 1


def test_run_by_hand_it_reports_yesterday(db):
    assert DailyStatisticsJob.perform_now()["day"] == (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    assert DailyStatistics.objects.get().total_sales == 0


@pytest.fixture
def worker_clock_in_los_angeles(monkeypatch):
    """The process's local time zone far from the store's (Django sets TZ to TIME_ZONE)."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_cron_scheduler_enqueues_the_report_of_the_day_before_its_tick(seeded_day, enqueued_jobs,
                                                                          worker_clock_in_los_angeles):
    from demo_store import settings as demo_settings
    from djjobs.cron import Scheduler, parse_entries
    entries, _ = parse_entries(demo_settings.DJJOBS["CRON"])
    midnight = dt.datetime(2026, 5, 2, 0, 0, tzinfo=BERLIN).timestamp()  # 2026-05-01 15:00 in Los Angeles
    scheduler = Scheduler(enqueued_jobs, entries)
    scheduler.started_at = midnight - 3600
    assert scheduler.tick(now=midnight + 5) == [("daily-statistics", midnight)]
    assert_enqueued_with(job=DailyStatisticsJob, queue="low")
    assert drain_enqueued_jobs() == 1
    stats = DailyStatistics.objects.get()
    assert (stats.day, stats.total_sales) == (dt.date(2026, 5, 1), 5)


def test_the_schedule_in_settings_is_valid():
    from demo_store import settings as demo_settings
    from djjobs.cron import parse_entries
    [entry], problems = parse_entries(demo_settings.DJJOBS["CRON"])
    assert problems == [] and demo_settings.DJJOBS["ADAPTER"] == "database"
    assert entry.job_class() is DailyStatisticsJob and entry.cron == "0 0 * * *"


def test_pages_render(client, shop):
    book, buyer = shop
    purchase = PurchaseFactory(ebook=book, buyer=buyer)
    page = client.get(reverse("catalogue")).content.decode()
    assert "Engines" in page and 'href="/admin/"' in page and reverse("statistics") in page
    page = client.get(reverse("ebook", args=[book.pk])).content.decode()
    assert "10.00" in page and 'id="buy"' in page and "Marie" in page
    page = client.get(reverse("purchase", args=[purchase.pk])).content.decode()
    assert "0 of 3 emails sent" in page and 'http-equiv="refresh"' in page
    notify(purchase)
    page = client.get(reverse("purchase", args=[purchase.pk])).content.decode()
    assert "All 3 emails sent." in page and "http-equiv" not in page
    assert "No report yet" in client.get(reverse("statistics")).content.decode()
    DailyStatisticsJob.perform_now(timezone.localdate())
    assert "1 sale," in client.get(reverse("statistics")).content.decode()


def test_seed_store_is_idempotent(db):
    call_command("seed_store")
    call_command("seed_store")
    from demo_store.store.models import Buyer, Ebook, Seller
    from django.contrib.auth.models import User
    assert (Seller.objects.count(), Ebook.objects.count(), Buyer.objects.count()) == (3, 5, 3)
    assert User.objects.get(username="admin").check_password("admin")


@pytest.mark.parametrize("buyer", ["abc", "", "²"])
def test_a_malformed_buyer_is_not_found(client, shop, enqueued_jobs, buyer):
    book = shop[0]
    assert client.post(reverse("buy", args=[book.pk]), {"buyer": buyer}).status_code == 404
    assert enqueued_jobs.enqueued == []
