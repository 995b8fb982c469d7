"""Cancelling from the admin: the Cancel button on a job's page and on the lists, the
Cancelled tab, and the change permission."""
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
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
    user = User.objects.create_user(username, password="pw", is_staff=True, is_superuser=superuser)
    if not superuser:
        user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    c.force_login(user)
    return c


def page_of(c, job_id):
    return c.get(reverse("admin:djjobs_job_detail"), {"id": job_id}).content.decode()


def test_a_ready_job_is_cancelled_from_its_page_and_listed_in_the_cancelled_tab(adapter):
    env = Envelope(job="tests.jobs.EchoJob")
    adapter.enqueue(env)
    c = client_for("boss")
    assert 'value="cancel"' in page_of(c, env.job_id)
    response = c.post(reverse("admin:djjobs_jobs_action", args=["ready"]),
                      {"action": "cancel", "ids": env.job_id, "next": "/admin/"})
    assert response.status_code == 302
    assert adapter.get(env.job_id).state == "cancelled"
    assert LogEntry.objects.filter(change_message__contains=f"cancel 1 ready job(s): {env.job_id}").exists()
    listing = c.get(reverse("admin:djjobs_jobs", args=["cancelled"])).content.decode()
    assert env.job_id in listing and "Cancelled at" in listing
    assert 'value="cancel"' not in page_of(c, env.job_id) and 'value="retry_now"' in page_of(c, env.job_id)
    dashboard = c.get(reverse("admin:djjobs_dashboard_changelist")).content.decode()
    assert 'data-key="cancelled">1<' in dashboard


def test_a_running_job_is_asked_to_stop(adapter):
    env = Envelope(job="tests.jobs.EchoJob")
    adapter.enqueue(env)
    adapter.fetch(["default"], 1, 0, "w")
    c = client_for("boss")
    assert 'value="cancel"' in page_of(c, env.job_id)
    response = c.post(reverse("admin:djjobs_jobs_action", args=["running"]), {"action": "cancel", "ids": env.job_id},
                      follow=True)
    assert "asked to stop" in response.content.decode()
    assert adapter.cancel_requested(env.job_id) and adapter.get(env.job_id).state == "running"


def test_scheduled_jobs_are_cancelled_from_their_list(adapter):
    envs = [Envelope(job="tests.jobs.EchoJob", run_at=adapter.clock() + 600) for _ in range(3)]
    adapter.enqueue_many(envs)
    c = client_for("boss")
    assert 'value="cancel"' in c.get(reverse("admin:djjobs_jobs", args=["scheduled"])).content.decode()
    c.post(reverse("admin:djjobs_jobs_action", args=["scheduled"]),
           {"action": "cancel", "ids": [envs[0].job_id, envs[1].job_id]})
    assert [adapter.get(e.job_id).state for e in envs] == ["cancelled", "cancelled", "scheduled"]


def test_viewers_cannot_cancel(adapter):
    env = Envelope(job="tests.jobs.EchoJob")
    adapter.enqueue(env)
    c = client_for("viewer", superuser=False)
    assert 'value="cancel"' not in page_of(c, env.job_id)
    response = c.post(reverse("admin:djjobs_jobs_action", args=["ready"]), {"action": "cancel", "ids": env.job_id})
    assert response.status_code == 403
    assert adapter.get(env.job_id).state == "ready"
