"""A continuation's progress on the admin's job page (djjobs/admin/presenters.progress)."""
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.admin import presenters
from djjobs.continuations import with_progress
from djjobs.envelope import Envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    c = Client()
    c.force_login(User.objects.create_user("boss", password="pw", is_staff=True, is_superuser=True))
    return c


def test_the_job_page_shows_step_cursor_finished_steps_and_resumptions(admin_client):
    with use_adapter(MemoryAdapter()) as adapter:
        adapter.enqueue(env := Envelope(job="tests.jobs.EchoJob"))
        adapter.enqueue(plain := Envelope(job="tests.jobs.EchoJob"))
        [claim] = adapter.fetch(["default"], 1, 0, "w")
        progress = {"completed": ["download", "<b>x</b>"], "current": ["rows", {"page": 41}], "resumptions": 2}
        assert adapter.save_progress(claim, with_progress(claim.envelope, progress))
        adapter.release([claim])
        page = admin_client.get(reverse("admin:djjobs_job", args=[env.job_id])).content.decode()
        other = admin_client.get(reverse("admin:djjobs_job", args=[plain.job_id])).content.decode()
    assert "<th>Progress</th>" in page and "in step <strong>rows</strong>" in page
    assert "{&quot;page&quot;: 41}" in page and "download, &lt;b&gt;x&lt;/b&gt;" in page
    assert "Resumptions: 2" in page
    assert "<th>Progress</th>" not in other


@pytest.mark.parametrize("meta", [None, {}, {"progress": "x"}, {"progress": {"current": "odd", "completed": 3}},
                                  {"progress": {"completed": ["a"]}}])
def test_odd_progress_never_breaks_the_page(meta):
    shown = presenters.progress(meta)
    assert shown is None or isinstance(shown["completed"], str)
