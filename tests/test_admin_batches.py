"""The admin's batch pages (djjobs/admin/batch_views.py), through the test client on real
storage (memory, Redis, SQLite, PostgreSQL): the Batches list, a batch's page with its
callbacks and failed jobs, the job page's batch, the dashboard's latest batches, the
permissions. Batches are made as users make them (``with Batch(...)``, ``perform_later``)
and their jobs ended as a worker ends them (fetch, then complete, kill or cancel)."""
import html
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from djjobs import Batch, BatchStatus
from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.admin import batch_presenters
from tests.jobs import EchoJob

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ADAPTERS = ["memory_adapter", "redis_adapter", "database_sqlite_adapter", "database_postgres_adapter"]


def url(name, *args):
    return reverse(f"admin:djjobs_{name}", args=args)


def batch_url(batch_id):
    return f"{url('batch')}?id={batch_id}"


def job_url(job_id):
    return f"{url('job_detail')}?id={job_id}"


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    a = request.getfixturevalue(request.param)
    with use_adapter(a):
        yield a


@pytest.fixture
def memory():
    with use_adapter(MemoryAdapter()) as a:
        yield a


def user(username, *perms, superuser=False):
    u = User.objects.create_user(username, password="pw", is_staff=True, is_superuser=superuser)
    for codename in perms:
        u.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="djjobs"))
    return u


def client_for(u):
    c = Client()
    c.force_login(u)
    return c


@pytest.fixture
def admin_client():
    return client_for(user("boss", superuser=True))


def run(adapter, *, fail=(), cancel=()):
    """As a worker does, for every ready job: those whose first argument is in ``fail`` die
    (with an error), the others succeed. Jobs whose first argument is in ``cancel`` are
    cancelled before the fetch."""
    if cancel:
        ids = [env.job_id for env in _enqueued if env.args and env.args[0] in cancel]
        adapter.cancel(ids)
    claims = adapter.fetch(["default"], 100, 0, "w")
    good = [c for c in claims if not (c.envelope.args and c.envelope.args[0] in fail)]
    if good:
        adapter.complete(good)
    for claim in claims:
        if claim not in good:
            adapter.kill(claim, claim.envelope.copy(executions=3, error={
                "class": "builtins.ValueError", "message": f"row {claim.envelope.args[0]} broke",
                "traceback": "Traceback (most recent call last): ...", "failed_at": adapter.clock()}))


_enqueued: list = []


def jobs_in(batch, *args):
    """Enqueue one EchoJob per argument into ``batch`` (its ``with`` block: they join it)."""
    with batch:
        for arg in args:
            _enqueued.append(EchoJob.perform_later(arg).envelope)
    return batch


@pytest.fixture(autouse=True)
def _forget_enqueued():
    _enqueued.clear()
    yield
    _enqueued.clear()


def rows(page: str, attribute="data-batch-id") -> dict[str, str]:
    """Each table row's text (tags stripped), by its data attribute, in page order."""
    found = re.findall(rf'<tr {attribute}="([^"]*)"[^>]*>(.*?)</tr>', page, re.S)
    return {html.unescape(key): " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split()) for key, body in found}


def test_the_batches_page_lists_newest_first_with_figures_and_state(admin_client, adapter):
    done = jobs_in(Batch(description="Import users"), "a", "b", "c", "d")
    run(adapter, fail=("b",), cancel=("c",))  # a succeeds, b dies, c is cancelled, d succeeds
    empty = Batch(description="Nothing to do")
    with empty:
        pass  # an empty batch completes at once: success
    pending = jobs_in(Batch(description="<script>alert(1)</script>"), "p", "q")
    with Batch() as still_open:
        EchoJob.perform_later("o")
        page = admin_client.get(url("batches")).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    listed = rows(page)
    assert list(listed) == [still_open.id, pending.id, empty.id, done.id]  # newest first
    assert "4 batches" in page
    # description (or the id), progress ended/total, the six counts, the state
    assert listed[done.id].startswith("Import users ")
    assert "4/4 4 0 2 1 0 1 complete" in listed[done.id]
    assert "0/0 0 0 0 0 0 0 success" in listed[empty.id]
    assert "0/2 2 2 0 0 0 0 closed" in listed[pending.id]
    assert listed[still_open.id].startswith(still_open.id) and "0/1 1 1 0 0 0 0 open" in listed[still_open.id]
    assert html.escape(batch_url(done.id)) in page
    assert 'class="active">Batches</a>' in page


def test_a_batch_page_shows_its_figures_callbacks_and_failed_jobs(admin_client, adapter):
    batch = jobs_in(Batch(description="Import users", on_complete=EchoJob, on_success=EchoJob, on_death=EchoJob,
                          properties={"file": "users.csv", "api_token": "s3cr3t-token"}), "a", "bad", "gone")
    dead_id = next(e.job_id for e in _enqueued if e.args == ["bad"])
    cancelled_id = next(e.job_id for e in _enqueued if e.args == ["gone"])
    run(adapter, fail=("bad",), cancel=("gone",))
    status = adapter.batch_status(batch.id)
    assert status.complete and status.dead == 1 and status.cancelled == 1
    page = admin_client.get(url("batch"), {"id": batch.id}).content.decode()
    assert "Import users" in page and ">complete<" in page
    assert "3/3 ended (100 %)" in " ".join(re.sub(r"<[^>]+>", " ", page).split())
    # callbacks: on_death and on_complete fired (stored now, ready: linked), on_success never will
    callbacks = rows(page, "data-event")
    death, complete = status.callbacks["death"], status.callbacks["complete"]
    assert callbacks["death"] == f"on_death {death} yes, ready"
    assert callbacks["complete"] == f"on_complete {complete} yes, ready"
    assert callbacks["success"].endswith("never: a job of the batch did not succeed")
    assert html.escape(job_url(death)) in page and html.escape(job_url(complete)) in page
    assert html.escape(job_url(status.callbacks["success"])) not in page
    # failed jobs: the dead one (with its error) and the cancelled one, each linking to its job page
    failed = rows(page, "data-job-id")
    assert set(failed) == {dead_id, cancelled_id}
    assert "dead" in failed[dead_id] and "ValueError : row bad broke" in failed[dead_id]
    assert "cancelled" in failed[cancelled_id]
    assert html.escape(job_url(dead_id)) in page and html.escape(job_url(cancelled_id)) in page
    # properties, with the secret-looking one masked as job arguments are
    assert "users.csv" in page and "api_token" in page and "s3cr3t-token" not in page and "********" in page
    # once the callbacks ran and finished they are no longer stored: said so, not linked
    adapter.complete(adapter.fetch(["default"], 10, 0, "w"))
    after = rows(admin_client.get(url("batch"), {"id": batch.id}).content.decode(), "data-event")
    assert after["death"] == f"on_death {death} fired; no longer stored (it finished, or was deleted)"


def test_a_job_page_shows_its_batch_and_a_callback_its_batch_and_event(admin_client, adapter):
    batch = jobs_in(Batch(description="Nightly export", on_death=EchoJob), "ok", "bad", "later")
    member = next(e.job_id for e in _enqueued if e.args == ["later"])
    claims = adapter.fetch(["default"], 10, 0, "w")
    adapter.complete([c for c in claims if c.envelope.args == ["ok"]])
    [bad] = [c for c in claims if c.envelope.args == ["bad"]]
    adapter.kill(bad, bad.envelope.copy(error={"class": "builtins.ValueError", "message": "no", "traceback": "",
                                               "failed_at": adapter.clock()}))
    page = admin_client.get(url("job_detail"), {"id": member}).content.decode()
    [row] = re.findall(r'<tr id="djjobs-job-batch">(.*?)</tr>', page, re.S)
    assert html.escape(batch_url(batch.id)) in row and "Nightly export" in row and "<small>2/3</small>" in row
    assert "2 of 3 ended (66 %): 1 succeeded, 1 failed" in row
    assert "closed" in row
    assert 'id="djjobs-job-callback"' not in page
    death = adapter.batch_status(batch.id).callbacks["death"]
    callback = admin_client.get(url("job_detail"), {"id": death}).content.decode()
    [row] = re.findall(r'<tr id="djjobs-job-callback">(.*?)</tr>', callback, re.S)
    assert "on_death of" in row and html.escape(batch_url(batch.id)) in row and "Nightly export" in row
    assert 'id="djjobs-job-batch"' not in callback  # a callback is not a job of its batch
    plain = EchoJob.perform_later("alone").envelope.job_id
    alone = admin_client.get(url("job_detail"), {"id": plain}).content.decode()
    assert "djjobs-job-batch" not in alone and "djjobs-job-callback" not in alone


def test_a_job_whose_batch_was_pruned_says_so(admin_client, clock):
    """A dead job outlives its batch (pruned BATCH_RETENTION_SECONDS after completing)."""
    with use_adapter(MemoryAdapter({"BATCH_RETENTION_SECONDS": 60})) as adapter:
        adapter.clock = clock
        batch = jobs_in(Batch(description="Old"), "bad")
        run(adapter, fail=("bad",))
        clock.advance(61)
        adapter.repair_batches()
        assert adapter.batch_status(batch.id) is None
        page = admin_client.get(url("job_detail"), {"id": _enqueued[0].job_id}).content.decode()
        assert f"{batch.id} <small>(not stored: pruned after completing, or never opened)</small>" in page
        assert html.escape(batch_url(batch.id)) not in page
        assert admin_client.get(url("batch"), {"id": batch.id}).status_code == 404


@pytest.mark.parametrize("adapter", ["memory_adapter", "database_sqlite_adapter"], indirect=True)
def test_the_batches_page_is_paginated(admin_client, adapter):
    made = []
    for i in range(27):
        with Batch(description=f"batch {i}") as b:
            pass
        made.append(b.id)
    first = admin_client.get(url("batches")).content.decode()
    assert "27 batches" in first and "page 1 of 2" in first
    assert list(rows(first)) == made[::-1][:25]
    second = admin_client.get(url("batches"), {"page": 2}).content.decode()
    assert list(rows(second)) == made[::-1][25:] and "page 2 of 2" in second and "‹ previous" in second
    beyond = admin_client.get(url("batches"), {"page": 9}).content.decode()
    assert "There is no page 9: this list has 2." in beyond and not rows(beyond)
    bad = admin_client.get(url("batches"), {"page": "two"})
    assert bad.status_code == 200 and "is not a page number" in bad.content.decode()
    assert list(rows(bad.content.decode())) == made[::-1][:25]


def test_the_dashboard_shows_the_latest_batches(admin_client, memory):
    assert "Latest batches" not in admin_client.get(url("dashboard_changelist")).content.decode()
    ids = []
    for i in range(7):
        ids.append(jobs_in(Batch(description=f"import {i}"), i).id)
    page = admin_client.get(url("dashboard_changelist")).content.decode()
    assert "Latest batches" in page and list(rows(page)) == ids[::-1][:5]
    assert f'href="{url("batches")}">All 7 batches ›' in page
    assert "0/1" in rows(page)[ids[-1]] and "closed" in rows(page)[ids[-1]]


def test_permissions(memory):
    batch = jobs_in(Batch(description="Import"), "a")
    pages = [url("batches"), batch_url(batch.id)]
    for page in pages:
        assert Client().get(page).status_code == 302  # to the login page
        assert client_for(user(f"staff{len(page)}")).get(page).status_code == 403
    viewer = client_for(user("viewer", "view_dashboard"))
    for page in pages:
        response = viewer.get(page)
        assert response.status_code == 200 and "Import" in response.content.decode()
    job = viewer.get(url("job_detail"), {"id": _enqueued[0].job_id}).content.decode()
    assert html.escape(batch_url(batch.id)) in job
    changer = client_for(user("changer", "change_dashboard"))
    assert changer.get(url("batches")).status_code == 200


def test_a_missing_or_odd_batch_id_is_a_clear_page(admin_client, adapter):
    assert admin_client.get(url("batch"), {"id": "no-such-batch"}).status_code == 404
    none = admin_client.get(url("batch"))
    assert none.status_code == 400 and "No batch id given" in none.content.decode()
    long = admin_client.get(url("batch"), {"id": "x" * 65})
    assert long.status_code == 400 and "at most 64 characters" in long.content.decode()
    for odd in ("line\nbreak", "../../etc", "é中 ?#&%", "nul\x00byte"):
        assert admin_client.get(url("batch"), {"id": odd}).status_code in (400, 404), odd


def test_odd_figures_render_without_error():
    """Storage holds what it holds: the presenters show something for any status."""
    odd = BatchStatus(id="b", description=None, total="many", pending=float("nan"), succeeded=True, dead=-3,
                      discarded=10**30, cancelled=None, closed="yes", created_ts=1e300, completed_ts=None,
                      properties={"password": "pw", "n": {1, 2}}, callbacks=["complete"])
    shown = batch_presenters.batch(odd)
    assert shown["total"] == 0 and shown["pending"] == 0 and shown["succeeded"] == 0 and shown["dead"] == 0
    assert shown["percent"] == 100 and shown["state"] == "open" and shown["label"] == "b"
    assert shown["created_at"] is None
    assert "pw" not in batch_presenters.properties(odd).replace("password", "")
    assert batch_presenters.callbacks(odd) == []
    over = batch_presenters.batch(BatchStatus(id="c", total=2, pending=-5, succeeded=9))
    assert over["ended"] == 2 and over["succeeded_width"] == "100.0" and over["percent"] == 100
    assert batch_presenters.of_job({"batch": 7, "batch_event": {"batch": "b", "event": "later"}}) == (None, None)
    assert batch_presenters.of_job("not a dict") == (None, None)
    assert batch_presenters.of_job({"batch": "b", "batch_event": {"batch": "c", "event": "death"}}) == \
        ("b", ("c", "death"))
