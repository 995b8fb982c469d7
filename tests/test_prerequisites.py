"""Prerequisites (djjobs/prerequisites.py): the API, the test helpers, and chains run by
runjobs with real processes on Redis, SQLite and PostgreSQL."""
import time

import pytest

import djjobs
from djjobs import Job, discard_on, perform_all_later
from djjobs.adapters import use_adapter
from tests.fixtures.worker import wait_for
from tests.worker_jobs import LinkJob


class StepJob(Job):
    log = []

    def perform(self, name, fail=False):
        if fail:
            raise ValueError(name)
        StepJob.log.append(name)


@discard_on(ValueError)
class DiscardedJob(Job):
    def perform(self):
        raise ValueError("gone")


class UniqueStep(Job):
    unique_for = 60

    def perform(self):
        pass


def test_after_takes_jobs_or_ids_and_says_what_is_wrong(enqueued_jobs):
    first = StepJob.perform_later("a")
    child = StepJob.set(after=[first, "some-id", first]).perform_later("b")
    assert child.envelope.meta["after"] == {"ids": [first.job_id, "some-id"], "fails": "dead"}
    assert StepJob.set(after=first).perform_later("c").envelope.meta["after"]["ids"] == [first.job_id]
    with pytest.raises(TypeError, match="after= takes jobs"):
        StepJob.set(after=[3]).perform_later("d")
    with pytest.raises(ValueError, match="names no job"):
        StepJob.set(after=[]).perform_later("d")
    with pytest.raises(ValueError, match="if_prerequisite_fails must be one of"):
        StepJob.set(after=[first], if_prerequisite_fails="ignore").perform_later("d")
    with pytest.raises(TypeError, match="applies to a job with after="):
        StepJob.set(if_prerequisite_fails="run").perform_later("d")
    with pytest.raises(ValueError, match="cannot have prerequisites"):
        UniqueStep.set(after=[first]).perform_later()
    with pytest.raises(ValueError, match="over 100"):
        StepJob.set(after=[f"id{i}" for i in range(101)]).perform_later("d")


def test_a_drain_runs_a_chain_in_order_and_a_failure_goes_down_it(enqueued_jobs):
    StepJob.log.clear()
    c = StepJob.set(after=[b := StepJob.set(after=[a := StepJob.perform_later("a")]).perform_later("b")]
                    ).perform_later("c")
    assert [enqueued_jobs.get(j.job_id).state for j in (a, b, c)] == ["ready", "waiting", "waiting"]
    assert enqueued_jobs.drain() == 3
    assert StepJob.log == ["a", "b", "c"]
    gone = DiscardedJob.perform_later()
    after_gone = StepJob.set(after=[gone]).perform_later("never")
    runs_anyway = StepJob.set(after=[gone], if_prerequisite_fails="run").perform_later("anyway")
    enqueued_jobs.drain()
    assert StepJob.log[-1] == "anyway" and "never" not in StepJob.log
    record = enqueued_jobs.get(after_gone.job_id)
    assert record.state == "dead" and "was discarded" in record.error["message"]
    assert enqueued_jobs.get(runs_anyway.job_id) is None


def test_perform_all_later_stores_a_prerequisite_before_its_dependant(enqueued_jobs):
    StepJob.log.clear()
    first = StepJob("x")
    then = StepJob.set(after=[first]).new("y")
    perform_all_later([then, first])  # in either order: the dependant still waits
    assert enqueued_jobs.get(then.job_id).state == "waiting"
    enqueued_jobs.drain()
    assert StepJob.log == ["x", "y"]


def test_the_waiting_tab_and_jobs_status_show_waiting_jobs(enqueued_jobs, admin_client):
    first = StepJob.perform_later("p")
    child = StepJob.set(after=[first]).perform_later("q")
    from django.core.management import call_command
    from io import StringIO
    out = StringIO()
    call_command("jobs_status", stdout=out)
    assert "Waiting: 1" in out.getvalue()
    page = admin_client.get("/admin/djjobs/dashboard/waiting/").content.decode()
    assert child.job_id in page and first.job_id in page
    detail = admin_client.get("/admin/djjobs/dashboard/job/", {"id": child.job_id}).content.decode()
    assert "Waits for" in detail and first.job_id in detail


def lines(trace):
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_500_chains_run_in_order_across_two_processes(backend, start_worker, tmp_path):
    """500 chains of 2 links after a first link each (1,500 jobs), the links enqueued while
    runjobs -p 2 -c 10 runs their prerequisites (each enqueue races the prerequisite's end):
    every link ran once, each after its prerequisite ended, and nothing is left waiting."""
    trace = tmp_path / "trace"
    with use_adapter(backend.adapter):
        heads = [LinkJob(str(trace), f"h{i}", 0.04) for i in range(500)]
        perform_all_later(heads)
        start_worker("-p", "2", "-c", "10")
        wait_for(lambda: sum(f[0] == "end" for f in lines(trace)) >= 5, 60, "the first heads to run")
        mids, enqueuing_from = [], time.time()
        for i, head in enumerate(heads):
            mids.append(LinkJob.set(after=[head]).perform_later(str(trace), f"m{i}"))
        for i, mid in enumerate(mids):
            LinkJob.set(after=[mid, heads[i]]).perform_later(str(trace), f"t{i}")
    wait_for(lambda: sum(f[0] == "end" for f in lines(trace)) >= 1500, 150, "1,500 links", interval=0.2)
    ended_first = sorted(float(f[2]) for f in lines(trace) if f[0] == "end" and f[1].startswith("h"))
    assert ended_first[-1] > enqueuing_from + 0.2  # heads kept ending while their dependants were enqueued
    events = {}
    for kind, token, at in lines(trace):
        assert (kind, token) not in events, f"{token} ran twice"
        events[(kind, token)] = float(at)
    for i in range(500):
        assert events[("start", f"m{i}")] >= events[("end", f"h{i}")]
        assert events[("start", f"t{i}")] >= events[("end", f"m{i}")]
    counts = backend.adapter.counts()
    assert (counts.waiting, counts.dead) == (0, 0)


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_failed_prerequisite_sends_its_chain_to_the_dead_set_on_runjobs(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    with use_adapter(backend.adapter):
        bad = LinkJob.perform_later(str(trace), "bad", 0.2, True)
        child = LinkJob.set(after=[bad]).perform_later(str(trace), "child")
        grandchild = LinkJob.set(after=[child]).perform_later(str(trace), "grandchild")
        runs = LinkJob.set(after=[bad], if_prerequisite_fails="run").perform_later(str(trace), "runs")
        start_worker("-c", "2")
        wait_for(lambda: any(f[:2] == ["end", "runs"] for f in lines(trace)), 60, "the 'run' dependant")
    for job, parent in ((child, bad), (grandchild, child)):
        record = backend.adapter.get(job.job_id)
        assert record.state == "dead" and record.error["class"] == "djjobs.errors.PrerequisiteFailed"
        assert parent.job_id in record.error["message"]
    assert not any(f[1] in ("child", "grandchild") for f in lines(trace))
    assert backend.adapter.counts().waiting == 0
    wait_for(lambda: backend.adapter.get(runs.job_id) is None, 30, "the 'run' dependant to be acknowledged")


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_cancelling_a_prerequisite_ends_its_dependants(backend):
    with use_adapter(backend.adapter):
        first = LinkJob.set(wait=600).perform_later("/dev/null", "first")
        child = LinkJob.set(after=[first]).perform_later("/dev/null", "child")
        assert djjobs.cancel(first.job_id) == "cancelled"
    record = backend.adapter.get(child.job_id)
    assert record.state == "dead" and "was cancelled" in record.error["message"]
