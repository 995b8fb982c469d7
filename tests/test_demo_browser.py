"""The demo store with real parts: a real worker process (database adapter, SQLite)
sends a purchase's emails; a worker SIGKILLed between two emails never sends one twice;
and a real browser buys an ebook and watches the emails go out."""
import os
import signal

import pytest
from django.urls import reverse

from demo_store.store.factories import BuyerFactory, EbookFactory, PurchaseFactory, SellerFactory
from demo_store.store.jobs import PurchaseNotificationJob
from demo_store.store.models import SentEmail
from djjobs.adapters import use_adapter
from tests.fixtures.worker import FAST, Backend, Worker, _databases, wait_for
from tests.test_admin_browser import CHROMIUM, MISSING

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def backend():
    return Backend("database-sqlite", {"ADAPTER": "database", "DATABASE": "default", **FAST}, _databases())


def mails(path):
    """The messages Django's file-based backend wrote. Count messages, not files: a file
    is named by time (to the second) and the backend object's id(), so two backends
    created in one second at the same address append to one file."""
    if not os.path.isdir(path):
        return []
    separator = b"\n" + b"-" * 79 + b"\n"
    return [message for name in sorted(os.listdir(path))
            for message in (path / name).read_bytes().split(separator) if message.strip()]


def test_a_worker_killed_mid_job_never_sends_an_email_twice(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("DJJOBS_TEST_MAIL_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("DEMO_EMAIL_PAUSE", "3")
    purchase = PurchaseFactory(ebook=EbookFactory(seller=SellerFactory()), buyer=BuyerFactory())
    with use_adapter(backend.adapter):
        PurchaseNotificationJob.perform_later(purchase)
    worker = Worker(backend, tmp_path / "worker.log", ["-q", "mailers", "-c", "2"])
    try:
        wait_for(lambda: SentEmail.objects.filter(purchase=purchase).count() == 1, 60, "the first email")
        [child] = worker.children()
        os.kill(child, signal.SIGKILL)  # mid-job: one email out, two to go
        wait_for(lambda: SentEmail.objects.filter(purchase=purchase).count() == 3, 90,
                 "the re-run after the lease to send the rest")
    finally:
        worker.stop()
    assert len(mails(tmp_path / "mail")) == 3
    assert sorted(SentEmail.objects.values_list("kind", flat=True)) == ["commission", "receipt", "sales"]


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "")
def test_buy_an_ebook_in_a_browser_and_see_the_emails_go_out(backend, live_server, tmp_path, monkeypatch):
    monkeypatch.setenv("DJJOBS_TEST_MAIL_DIR", str(tmp_path / "mail"))
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    book = EbookFactory(title="Poetical Science", seller=SellerFactory(name="Ada"))
    BuyerFactory(name="Marie Curie")
    worker = Worker(backend, tmp_path / "worker.log", ["-c", "2"])
    from playwright.sync_api import sync_playwright
    try:
        with use_adapter(backend.adapter), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"])
            page = browser.new_page()
            page.set_default_timeout(30000)
            page.goto(f"{live_server.url}{reverse('ebook', args=[book.pk])}")
            page.click("#buy")
            page.wait_for_selector("text=Thank you, Marie Curie!")
            page.wait_for_selector("text=All 3 emails sent.")  # the page refreshes while the worker works
            if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                page.screenshot(path=str(os.path.join(os.path.dirname(__file__), "..", "docs", "screenshots",
                                                      "demo-purchase.png")), full_page=True)
            browser.close()
    finally:
        worker.stop()
    assert len(mails(tmp_path / "mail")) == 3
