"""The admin's Limits page: held uniqueness keys (released by hand) and rate limits in use."""
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.envelope import Envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def adapter():
    with use_adapter(MemoryAdapter()) as a:
        yield a


def client_for(username, superuser=True):
    c = Client()
    c.force_login(User.objects.create_user(username, password="pw", is_staff=True, is_superuser=superuser))
    return c


def held(adapter, key):
    env = Envelope(job="tests.jobs.EchoJob", meta={"unique": {"key": key, "expires": adapter.clock() + 600,
                                                              "until": "finish", "conflict": "skip"}})
    adapter.enqueue(env)
    return env


def test_the_page_lists_keys_and_rates(adapter):
    job = held(adapter, "account:7\nnewline")
    adapter.take_rate("stripe", 4, 60.0, "m")
    page = client_for("boss").get(reverse("admin:djjobs_limits")).content.decode()
    assert "account:7" in page and job.job_id in page and "Release" in page
    assert "stripe" in page and "4 per 60 s" in page and "25 %" in page


def test_release_by_hand_frees_the_key_and_is_logged(adapter):
    held(adapter, "odd key\n/é")
    c = client_for("boss")
    response = c.post(reverse("admin:djjobs_limits_action"),
                      {"action": "release_unique", "key": "odd%20key%0A%2F%C3%A9", "encoding": "url"})
    assert response.status_code == 302 and response["Location"] == reverse("admin:djjobs_limits")
    assert adapter.unique_holds() == []
    assert LogEntry.objects.filter(change_message__contains="release uniqueness key odd key").exists()
    again = c.post(reverse("admin:djjobs_limits_action"), {"action": "release_unique", "key": "odd key"}, follow=True)
    assert "was not held" in again.content.decode()


def test_viewers_see_no_release_button_and_cannot_post(adapter):
    from django.contrib.auth.models import Permission
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_dashboard", content_type__app_label="djjobs"))
    c = Client()
    c.force_login(viewer)
    held(adapter, "k")
    page = c.get(reverse("admin:djjobs_limits")).content.decode()
    assert "k" in page and "Release" not in page
    assert c.post(reverse("admin:djjobs_limits_action"), {"action": "release_unique", "key": "k"}).status_code == 403
    assert len(adapter.unique_holds()) == 1


def test_an_unknown_action_is_a_message(adapter):
    response = client_for("boss").post(reverse("admin:djjobs_limits_action"), {"action": "drop", "key": "k"},
                                       follow=True)
    assert "Unknown limits action" in response.content.decode()


def limited(key, limit=1):
    return Envelope(job="tests.jobs.EchoJob", meta={"concurrency": {"key": key, "limit": limit}})


def test_blocked_jobs_have_their_tab_and_keys_their_holders(adapter):
    holder, waiting = limited("account:1"), limited("account:1")
    adapter.enqueue_many([holder, waiting])
    c = client_for("boss")
    page = c.get(reverse("admin:djjobs_jobs", args=["blocked"])).content.decode()
    assert waiting.job_id in page and holder.job_id not in page and "Waits for a slot of" in page
    limits = c.get(reverse("admin:djjobs_limits")).content.decode()
    assert "account:1" in limits and holder.job_id in limits
    dashboard = c.get(reverse("admin:djjobs_dashboard_changelist")).content.decode()
    assert 'data-key="blocked">1<' in dashboard
    response = c.post(reverse("admin:djjobs_jobs_action", args=["blocked"]),
                      {"action": "delete", "ids": waiting.job_id})
    assert response.status_code == 302 and adapter.counts().blocked == 0
