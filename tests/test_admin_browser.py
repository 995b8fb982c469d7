"""The admin job pages in a real browser (Debian's Chromium driven by Playwright,
headless, loopback only): dashboard, retrying a dead job, pausing a queue, batches.
With UPDATE_SCREENSHOTS=1 the pages' screenshots are written to docs/screenshots/."""
import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from djjobs.adapters import use_adapter
from djjobs.adapters.base import WorkerInfo
from djjobs.adapters.memory import MemoryAdapter
from djjobs.envelope import Envelope

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not os.path.exists(CHROMIUM):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


MISSING = _browser_missing()
if MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"Browser tests cannot run in CI: {MISSING}")
pytestmark = [pytest.mark.skipif(bool(MISSING), reason=MISSING or ""), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(live_server):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(15000)
        User.objects.create_superuser("admin", "admin@example.com", "admin-pw")
        tab.goto(f"{live_server.url}/admin/login/")
        tab.fill("#id_username", "admin")
        tab.fill("#id_password", "admin-pw")
        tab.click("input[type=submit]")
        tab.wait_for_url(f"{live_server.url}/admin/")
        yield tab
        browser.close()


@pytest.fixture
def adapter():
    with use_adapter(MemoryAdapter()) as a:
        yield a


def fill(adapter):
    """A little of everything, so each page has something to show."""
    import time
    for i in range(5):
        adapter.enqueue(Envelope(job="tests.jobs.EchoJob", args=[i]))
    adapter.complete(adapter.fetch(["default"], 2, 0, "w"))  # some history for the chart
    adapter.enqueue(Envelope(job="tests.jobs.MailerJob", queue="mailers", args=["ann@example.com"]))
    adapter.enqueue(Envelope(job="tests.jobs.EchoJob", run_at=time.time() + 3600, kwargs={"report": "weekly"}))
    dead = []
    for i, (cls, msg) in enumerate([("builtins.ValueError", "bad value"), ("smtplib.SMTPException", "mailbox full")]):
        env = Envelope(job="tests.jobs.MailerJob", queue="mailers", args=[f"user{i}@example.com"],
                       kwargs={"token": "s3cret"})
        adapter.enqueue(env)
        [claim] = adapter.fetch(["mailers"], 1, 0, "w")
        adapter.kill(claim, claim.envelope.copy(executions=3, error={
            "class": cls, "message": msg, "traceback": f"Traceback (most recent call last):\n  ...\n{cls}: {msg}",
            "failed_at": time.time()}))
        dead.append(claim.envelope)
    retry_env = Envelope(job="tests.jobs.FlakyJob", args=[3])
    adapter.enqueue(retry_env)
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.retry(claim, claim.envelope.copy(executions=1, error={
        "class": "tests.jobs.FlakyError", "message": "attempt 1", "traceback": "", "failed_at": time.time()}),
        time.time() + 30)
    adapter.heartbeat(WorkerInfo("web-1:4242:a1b2c3", "web-1", 4242, ["default", "mailers"], 10, time.time() - 300,
                                 busy=[{"job_id": "abc", "job": "tests.jobs.EchoJob", "queue": "default",
                                        "started_at": time.time() - 2}]), [])
    return dead


def shot(page, name):
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_dashboard_opens_and_refreshes_live(page, live_server, adapter):
    fill(adapter)
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/")
    assert page.locator("[data-key=dead]").inner_text() == "2"
    assert page.locator("[data-key=processed_today]").inner_text() == "2"
    assert page.locator("svg.djjobs-chart").is_visible()
    before = int(page.locator("[data-key=enqueued]").inner_text())
    adapter.enqueue(Envelope(job="tests.jobs.EchoJob"))
    page.wait_for_function(f"document.querySelector('[data-key=enqueued]').textContent === '{before + 1}'",
                           timeout=10000)
    shot(page, "dashboard")


def test_retry_a_dead_job_and_see_it_leave_the_table(page, live_server, adapter):
    dead = fill(adapter)
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/dead/")
    shot(page, "dead")
    row = page.locator(f'tr[data-job-id="{dead[0].job_id}"]')
    assert row.count() == 1 and "s3cret" not in page.content()
    row.locator("input[name=ids]").check()
    page.click("button[value=retry_now]")
    page.wait_for_load_state()
    assert page.locator(f'tr[data-job-id="{dead[0].job_id}"]').count() == 0
    assert page.locator(f'tr[data-job-id="{dead[1].job_id}"]').count() == 1
    assert adapter.get(dead[0].job_id).state == "ready"
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/job/{dead[1].job_id}/")
    assert "mailbox full" in page.content()
    shot(page, "job")


def test_pause_a_queue(page, live_server, adapter):
    fill(adapter)
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/queues/")
    page.locator('tr[data-queue="mailers"] button[value=pause]').click()
    page.wait_for_load_state()
    assert "paused" in page.locator('tr[data-queue="mailers"]').inner_text()
    assert [q.paused for q in adapter.queues() if q.name == "mailers"] == [True]
    shot(page, "queues")


def test_other_pages_render(page, live_server, adapter):
    fill(adapter)
    expected = {"scheduled": "weekly", "retry": "attempt 1", "workers": "web-1:4242:a1b2c3", "cron": "No cron entries"}
    for path, text in expected.items():
        page.goto(f"{live_server.url}/admin/djjobs/dashboard/{path}/")
        assert text in page.locator("table.djjobs").inner_text()
        shot(page, {"retry": "retries"}.get(path, path))


def test_limits_page_releases_a_uniqueness_key(page, live_server, adapter):
    """The Limits page in a browser: a held uniqueness key released by hand, concurrency keys
    with their holders and blocked jobs, rate limits in use; the Blocked tab."""
    import time
    now = time.time()
    for account in (7, 8):
        adapter.enqueue(Envelope(job="tests.jobs.EchoJob", args=[account], meta={"unique": {
            "key": f"sync:account:{account}", "expires": now + 3600, "until": "finish", "conflict": "skip"}}))
    charges = [Envelope(job="tests.jobs.MailerJob", queue="mailers", args=[f"charge {n}"],
                        meta={"concurrency": {"key": "account:42", "limit": 2}}) for n in range(5)]
    adapter.enqueue_many(charges)
    for _ in range(37):
        adapter.take_rate("stripe", 100, 60.0, "m")
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/limits/")
    assert "sync:account:7" in page.locator("#djjobs-unique").inner_text()
    assert "3" in page.locator("#djjobs-concurrency").inner_text()
    assert "37 %" in page.locator("#djjobs-rates").inner_text()
    shot(page, "limits")
    page.locator("#djjobs-unique tr", has_text="sync:account:7").locator("button").click()
    page.wait_for_load_state()
    assert "Released the uniqueness key" in page.content()
    assert [h.key for h in adapter.unique_holds()] == ["sync:account:8"]
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/blocked/")
    assert page.locator("table.djjobs tbody tr").count() == 3 and "account:42" in page.content()
    shot(page, "blocked")


def test_batches_page_shows_a_running_batch(page, live_server, adapter):
    """The Batches page and a batch's page in a browser: a batch whose jobs are still running
    beside finished ones, its progress bar, a failed job linked from the batch's page."""
    import time
    from djjobs import Batch
    from tests.jobs import EchoJob, MailerJob
    with Batch(description="Welcome mails", on_complete=EchoJob) as mails:
        for n in range(3):
            MailerJob.perform_later(f"user{n}@example.com")
    adapter.complete(adapter.fetch(["mailers"], 3, 0, "w"))
    adapter.complete(adapter.fetch(["default"], 1, 0, "w"))  # its on_complete callback ran
    with Batch(description="Import users (users-2026-12.csv)", on_complete=EchoJob, on_death=EchoJob,
               properties={"file": "users-2026-12.csv", "api_token": "s3cret"}) as running:
        for n in range(20):
            EchoJob.perform_later(f"row {n}")
    claims = adapter.fetch(["default"], 14, 0, "w")
    adapter.complete(claims[:11])
    adapter.kill(claims[11], claims[11].envelope.copy(executions=3, error={
        "class": "builtins.ValueError", "message": "row 11: no e-mail address", "traceback": "", "failed_at": time.time()}))
    adapter.heartbeat(WorkerInfo("web-1:4242:a1b2c3", "web-1", 4242, ["default"], 2, time.time() - 60,
                                 busy=[{"job_id": c.envelope.job_id, "job": "tests.jobs.EchoJob", "queue": "default",
                                        "started_at": time.time() - 1} for c in claims[12:]]), claims[12:])
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/batches/")
    table = page.locator("#djjobs-batches")
    assert table.locator("tbody tr").count() == 2
    first = table.locator(f'tr[data-batch-id="{running.id}"]')
    assert "12/20" in first.inner_text() and "closed" in first.inner_text()
    assert "complete" not in first.inner_text()
    assert "success" in table.locator(f'tr[data-batch-id="{mails.id}"]').inner_text()
    assert first.locator(".djjobs-bar .ok").bounding_box()["width"] > 0
    shot(page, "batches")
    first.locator("a").first.click()
    page.wait_for_load_state()
    assert "row 11: no e-mail address" in page.locator("#djjobs-batch-failures").inner_text()
    assert "s3cret" not in page.content()
    shot(page, "batch")
    page.locator("#djjobs-batch-failures a").first.click()
    page.wait_for_load_state()
    assert "Import users" in page.locator("#djjobs-job-batch").inner_text()
    page.goto(f"{live_server.url}/admin/djjobs/dashboard/")
    assert page.locator("#djjobs-latest-batches tbody tr").count() == 2
