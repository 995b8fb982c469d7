"""The job pages in the Django admin, through the test client: every page, every
action, permissions and CSRF. (Real-browser tests: tests/test_admin_browser.py.)"""
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from djjobs.adapters import use_adapter
from djjobs.adapters.base import WorkerInfo
from djjobs.adapters.memory import MemoryAdapter
from djjobs.envelope import Envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def adapter():
    with use_adapter(MemoryAdapter()) as a:
        yield a


def user(username, *perms, staff=True, superuser=False):
    u = User.objects.create_user(username, password="pw", is_staff=staff, is_superuser=superuser)
    for codename in perms:
        u.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="djjobs"))
    return u


@pytest.fixture
def admin_client():
    c = Client()
    c.force_login(user("boss", superuser=True))
    return c


def dead_job(adapter, **kw):
    env = Envelope(job="tests.jobs.EchoJob", **kw)
    adapter.enqueue(env)
    [claim] = adapter.fetch([env.queue], 1, 0, "w")
    adapter.kill(claim, env.copy(executions=3, error={"class": "builtins.ValueError", "message": "it broke",
                                                     "traceback": "Traceback (most recent call last): ...",
                                                     "failed_at": 1.0}))
    return env


def url(name, *args):
    return reverse(f"admin:djjobs_{name}", args=args)


def test_index_lists_jobs(admin_client, adapter):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Jobs" in page and url("dashboard_changelist") in page


def test_every_page_renders(admin_client, adapter):
    dead_job(adapter)
    adapter.enqueue(Envelope(job="tests.jobs.EchoJob", run_at=adapter.clock() + 100))
    adapter.heartbeat(WorkerInfo("host:1:abc", "host", 1, ["default"], 10, adapter.clock()), [])
    for name, args in [("dashboard_changelist", ()), ("queues", ()), ("jobs", ("scheduled",)),
                       ("jobs", ("retry",)), ("jobs", ("dead",)), ("workers", ()), ("cron", ())]:
        response = admin_client.get(url(name, *args))
        assert response.status_code == 200, (name, args)
    assert "host:1:abc" in admin_client.get(url("workers")).content.decode()
    stats = admin_client.get(url("stats")).json()
    assert stats["dead"] == 1 and stats["scheduled"] == 1 and stats["failed"] == 1


def test_dashboard_shows_counts_and_a_chart(admin_client, adapter):
    dead_job(adapter)
    page = admin_client.get(url("dashboard_changelist")).content.decode()
    assert '<svg class="djjobs-chart"' in page and "1 failed" in page


def test_dead_list_detail_and_escaping(admin_client, adapter):
    env = dead_job(adapter, args=["<script>alert(1)</script>"], kwargs={"password": "hunter2", "user": "bob"})
    page = admin_client.get(url("jobs", "dead")).content.decode()
    assert env.job_id in page and "ValueError" in page and "it broke" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "hunter2" not in page and "********" in page and "bob" in page
    detail = admin_client.get(url("job", env.job_id)).content.decode()
    assert "Traceback (most recent call last)" in detail and "hunter2" not in detail
    assert admin_client.get(url("job", "missing")).status_code == 404


def test_filter_search_and_paginate(admin_client, adapter):
    for i in range(30):
        dead_job(adapter, args=[f"n{i}"])
    env = Envelope(job="tests.jobs.MailerJob", queue="mailers", args=["needle@example.com"])
    adapter.enqueue(env)
    [claim] = adapter.fetch(["mailers"], 1, 0, "w")
    adapter.kill(claim, env.copy(error={"class": "x.SMTPError", "message": "mailbox full", "traceback": "", "failed_at": 2.0}))
    page1 = admin_client.get(url("jobs", "dead")).content.decode()
    assert "31 jobs" in page1 and "page 1 of 2" in page1
    assert len(re.findall(r'data-job-id="', page1)) == 25
    page2 = admin_client.get(url("jobs", "dead") + "?page=2").content.decode()
    assert len(re.findall(r'data-job-id="', page2)) == 6
    only = admin_client.get(url("jobs", "dead") + "?job=tests.jobs.MailerJob").content.decode()
    assert "1 job" in only and env.job_id in only
    assert env.job_id in admin_client.get(url("jobs", "dead") + "?q=mailbox+full").content.decode()
    assert "1 job" in admin_client.get(url("jobs", "dead") + "?queue=mailers").content.decode()


def test_retry_and_delete_actions(admin_client, adapter):
    a, b = dead_job(adapter), dead_job(adapter)
    response = admin_client.post(url("jobs_action", "dead"), {"action": "retry_now", "ids": [a.job_id]})
    assert response.status_code == 302
    assert adapter.get(a.job_id).state == "ready"
    admin_client.post(url("jobs_action", "dead"), {"action": "delete", "ids": [b.job_id]})
    assert adapter.get(b.job_id) is None
    assert LogEntry.objects.filter(object_repr__startswith="retry_now 1 dead").exists()


def test_retry_all_and_kill(admin_client, adapter):
    for _ in range(3):
        dead_job(adapter)
    admin_client.post(url("jobs_action", "dead"), {"action": "retry_all"})
    assert adapter.counts().dead == 0 and adapter.counts().enqueued == 3
    env = Envelope(job="tests.jobs.EchoJob")
    adapter.enqueue(env)
    [claim] = adapter.fetch(["default"], 10, 0, "w")[:1]
    adapter.retry(claim, claim.envelope, adapter.clock() + 100)
    admin_client.post(url("jobs_action", "retry"), {"action": "kill", "ids": [claim.envelope.job_id]})
    assert adapter.get(claim.envelope.job_id).state == "dead"


def test_pause_resume_and_clear_with_confirmation(admin_client, adapter):
    adapter.enqueue(Envelope(job="tests.jobs.EchoJob", queue="low"))
    admin_client.post(url("queue_action"), {"action": "pause", "queue": "low"})
    assert [q.paused for q in adapter.queues() if q.name == "low"] == [True]
    assert "paused" in admin_client.get(url("queues")).content.decode()
    admin_client.post(url("queue_action"), {"action": "resume", "queue": "low"})
    assert [q.paused for q in adapter.queues() if q.name == "low"] == [False]
    confirm = admin_client.get(url("queues") + "?confirm_clear=low").content.decode()
    assert "Yes, clear low" in confirm
    unconfirmed = admin_client.post(url("queue_action"), {"action": "clear", "queue": "low"}, follow=True)
    assert "Nothing cleared" in unconfirmed.content.decode()
    assert adapter.counts().enqueued == 1
    admin_client.post(url("queue_action"), {"action": "clear", "queue": "low", "confirm": "yes"})
    assert adapter.counts().enqueued == 0


@override_settings(DJJOBS={"ADAPTER": "test", "CRON": {"nightly": {"cron": "0 3 * * *", "job": "tests.jobs.EchoJob"}}})
def test_cron_page_and_run_now(admin_client, adapter):
    page = admin_client.get(url("cron")).content.decode()
    assert "nightly" in page and "0 3 * * *" in page
    admin_client.post(url("cron_run"), {"name": "nightly"})
    assert adapter.counts().enqueued == 1
    assert "run now" in admin_client.get(url("cron")).content.decode()


def test_actions_need_post(admin_client, adapter):
    assert admin_client.get(url("jobs_action", "dead")).status_code == 405
    assert admin_client.get(url("queue_action")).status_code == 405


def test_actions_need_csrf(adapter):
    env = dead_job(adapter)
    c = Client(enforce_csrf_checks=True)
    c.force_login(user("boss", superuser=True))
    assert c.post(url("jobs_action", "dead"), {"action": "retry_now", "ids": [env.job_id]}).status_code == 403
    assert adapter.get(env.job_id).state == "dead"
    page = c.get(url("jobs", "dead")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    c.post(url("jobs_action", "dead"), {"action": "retry_now", "ids": [env.job_id], "csrfmiddlewaretoken": token})
    assert adapter.get(env.job_id).state == "ready"


def test_permissions(adapter):
    env = dead_job(adapter)
    anonymous = Client()
    assert anonymous.get(url("dashboard_changelist")).status_code == 302  # to the login page
    nobody = Client()
    nobody.force_login(user("staff"))
    assert nobody.get(url("jobs", "dead")).status_code == 403
    assert url("dashboard_changelist") not in nobody.get(reverse("admin:index")).content.decode()
    viewer = Client()
    viewer.force_login(user("viewer", "view_dashboard"))
    page = viewer.get(url("jobs", "dead")).content.decode()
    assert env.job_id in page and 'name="action"' not in page
    assert viewer.post(url("jobs_action", "dead"), {"action": "delete", "ids": [env.job_id]}).status_code == 403
    assert adapter.get(env.job_id) is not None
    changer = Client()
    changer.force_login(user("changer", "view_dashboard", "change_dashboard"))
    changer.post(url("jobs_action", "dead"), {"action": "delete", "ids": [env.job_id]})
    assert adapter.get(env.job_id) is None
    assert Client().get(url("stats")).status_code == 302


def test_a_viewer_searches_by_job_id_only(adapter):
    """A payload search would tell whether a masked argument contains a text, character
    by character: users without the change permission search job ids only."""
    env = dead_job(adapter, kwargs={"password": "tr0ub4dor"})
    viewer = Client()
    viewer.force_login(user("viewer", "view_dashboard"))
    assert env.job_id not in viewer.get(url("jobs", "dead"), {"q": "tr0ub"}).content.decode()
    assert env.job_id in viewer.get(url("jobs", "dead"), {"q": env.job_id}).content.decode()


def test_secrets_are_masked_in_pair_stored_dicts_and_unreadable_payloads(admin_client, adapter):
    from djjobs.arguments import serialize
    args, _ = serialize([{"password": "hunter2", 1: "x"}], {})
    env = dead_job(adapter, args=args)
    assert "hunter2" not in admin_client.get(url("jobs", "dead")).content.decode()
    assert "hunter2" not in admin_client.get(url("job", env.job_id)).content.decode()
    newer = Envelope(job="tests.jobs.EchoJob", kwargs={"password": "s3cr3t"}).encode().replace(
        b'"version":1', b'"version":2')
    adapter.enqueue_raw(newer, "default")
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.kill(claim, None)
    [record] = [r for r in adapter.jobs("dead").items if r.envelope is None]
    page = admin_client.get(url("job", record.job_id)).content.decode()
    assert "s3cr3t" not in page and "password" in page


@override_settings(DJJOBS={"ADMIN_SECRET_ARGUMENTS": []})
def test_an_empty_secret_list_masks_nothing():
    from djjobs.masking import masked
    assert masked({"user": "ann", "order": 7}) == {"user": "ann", "order": 7}


def test_odd_rows_do_not_break_the_lists(admin_client, adapter):
    env = dead_job(adapter, job_id="import/42")
    odd = Envelope(job="tests.jobs.EchoJob", job_id="")
    adapter.enqueue(odd)
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.kill(claim, odd.copy(error={"class": 7, "message": None, "traceback": "", "failed_at": 1.0}))
    assert admin_client.get(url("jobs", "dead")).status_code == 200
    assert admin_client.get(url("job", env.job_id)).status_code == 200
    assert admin_client.get(url("jobs", "dead"), {"page": "10000000000000000000"}).status_code == 200


def test_retry_all_moves_each_job_dead_at_the_click_once(admin_client, adapter):
    """A worker that fails a retried job back into the dead set meanwhile must not get it
    again from the same click."""
    for _ in range(3):
        dead_job(adapter)
    retry_now = adapter.retry_now
    moved = []

    def retry_and_fail_again(ids):
        n = retry_now(ids)
        moved.extend(ids)
        for claim in adapter.fetch(["default"], 10, 0, "w"):  # a worker fails them again at once
            adapter.kill(claim, claim.envelope)
        return n

    adapter.retry_now = retry_and_fail_again
    admin_client.post(url("jobs_action", "dead"), {"action": "retry_all"})
    assert len(moved) == 3 == len(set(moved))


@override_settings(DJJOBS={"CRON": {"nightly": {"cron": "0 3 * * *", "job": "tests.jobs.EchoJob"},
                                    "broken": {"cron": "not cron", "job": "tests.jobs.EchoJob"}}})
def test_run_now_works_beside_a_broken_entry(admin_client, adapter):
    assert admin_client.post(url("cron_run"), {"name": "nightly"}).status_code == 302
    assert adapter.counts().enqueued == 1


@override_settings(DJJOBS={"ADAPTER": "inline"})
def test_every_page_renders_on_the_inline_adapter(admin_client):
    for name in ("dashboard_changelist", "queues", "workers", "cron"):
        assert admin_client.get(url(name)).status_code == 200, name
    for state in ("scheduled", "retry", "dead"):
        assert admin_client.get(url("jobs", state)).status_code == 200, state
    assert admin_client.get(url("job", "nothing")).status_code == 404


def test_the_dead_page_shows_why_an_undecodable_payload_is_dead(admin_client, adapter):
    """The reason is stored beside a payload kept as it was (JobRecord.error): the
    listing and the job page show it, and never the payload's secret."""
    from djjobs.adapters.base import decode, stored_error
    raw = b'{"job":"tests.jobs.EchoJob","args":["hunter2"],"version":99}'
    adapter.enqueue_raw(raw, "default")
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.kill(claim, None, stored_error(decode(raw)[1], "Its payload does not decode", at=1.0))
    [record] = adapter.jobs("dead").items
    listing = admin_client.get(url("jobs", "dead")).content.decode()
    assert "PayloadError" in listing and "upgrade djjobs" in listing and "hunter2" not in listing
    page = admin_client.get(url("job", record.job_id)).content.decode()
    assert "upgrade djjobs" in page
