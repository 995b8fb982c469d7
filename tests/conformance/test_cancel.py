"""Cancellation in the adapter contract (djjobs/adapters/base.py, djjobs/cancellation.py), on
every adapter: waiting jobs end cancelled at once and are never claimed; a running job's
request is honoured by the step that stores its outcome."""
import pytest

from djjobs.envelope import Envelope

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def env(**kw):
    return Envelope(job="tests.jobs.EchoJob", **kw)


def claim(adapter, limit=100):
    return adapter.fetch(["default"], limit, 0, W)


def cancelled_ids(adapter):
    return [r.job_id for r in adapter.jobs("cancelled", per_page=100).items]


def test_ready_scheduled_and_retrying_jobs_are_cancelled_and_never_claimed(adapter):
    ready, later, failing = env(), env(run_at=adapter.clock() + 60), env()
    adapter.enqueue_many([ready, later, failing])
    [c] = [c for c in claim(adapter) if c.envelope.job_id == failing.job_id] or [None]
    assert c is not None
    adapter.enqueue(ready2 := env())
    adapter.retry(c, c.envelope, adapter.clock() + 30)
    done = adapter.cancel([later.job_id, failing.job_id, ready2.job_id, "no-such-job"])
    assert done == {later.job_id: "cancelled", failing.job_id: "cancelled", ready2.job_id: "cancelled"}
    adapter.clock.advance(120)
    adapter.promote_due()
    assert {c.envelope.job_id for c in claim(adapter)} <= {ready.job_id}
    assert claim(adapter) == []
    for job in (later, failing, ready2):
        assert adapter.get(job.job_id).state == "cancelled"
    counts = adapter.counts()
    assert (counts.cancelled, counts.scheduled, counts.retry) == (3, 0, 0)
    assert set(cancelled_ids(adapter)) == {later.job_id, failing.job_id, ready2.job_id}


def test_cancelling_twice_or_a_dead_job_does_nothing(adapter):
    a, b = env(), env()
    adapter.enqueue_many([a, b])
    assert adapter.cancel([a.job_id]) == {a.job_id: "cancelled"}
    assert adapter.cancel([a.job_id]) == {}
    [running] = claim(adapter)
    adapter.kill(running, running.envelope)
    assert adapter.cancel([b.job_id]) == {}
    assert adapter.get(b.job_id).state == "dead"


def test_cancelled_jobs_are_listed_newest_first_and_can_be_retried_or_deleted(adapter):
    jobs = [env() for _ in range(3)]
    adapter.enqueue_many(jobs)
    for job in jobs:
        adapter.cancel([job.job_id])
        adapter.clock.advance(1)
    assert cancelled_ids(adapter) == [j.job_id for j in reversed(jobs)]
    assert adapter.retry_now([jobs[0].job_id]) == 1
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[0].job_id]
    assert adapter.delete([jobs[1].job_id]) == 1
    assert adapter.get(jobs[1].job_id) is None
    assert cancelled_ids(adapter) == [jobs[2].job_id]


def test_a_running_job_gets_a_request_and_its_run_ends_cancelled(adapter):
    job = env()
    adapter.enqueue(job)
    [running] = claim(adapter)
    assert adapter.cancel_requested(job.job_id) is False
    assert adapter.cancel([job.job_id]) == {job.job_id: "cancelling"}
    assert adapter.cancel([job.job_id]) == {job.job_id: "cancelling"}
    assert adapter.cancel_requested(job.job_id) is True
    assert adapter.get(job.job_id).state == "running"
    before = adapter.counts()
    adapter.cancel_run(running, running.envelope.copy(executions=1))
    record = adapter.get(job.job_id)
    assert record.state == "cancelled" and record.envelope.executions == 1
    after = adapter.counts()
    assert (after.processed, after.failed, after.cancelled, after.busy) == (before.processed, before.failed, 1, 0)


@pytest.mark.parametrize("outcome", ["retry", "reschedule", "release", "recover", "abandon"])
def test_a_cancel_request_is_honoured_by_every_outcome_but_success_and_death(adapter, outcome):
    job = env()
    adapter.enqueue(job)
    [running] = claim(adapter)
    adapter.cancel([job.job_id])
    if outcome in ("retry", "reschedule"):
        getattr(adapter, outcome)(running, running.envelope, adapter.clock() + 30)
    elif outcome == "release":
        adapter.release([running])
    elif outcome == "recover":
        adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
        assert adapter.recover_expired() == 1
    else:
        assert adapter.abandon([running], "SIGKILL") == 1
    assert adapter.get(job.job_id).state == "cancelled"
    counts = adapter.counts()
    assert (counts.failed, counts.failed_today) == (0, 0)  # cancelled: counted neither processed nor failed
    adapter.clock.advance(60)
    adapter.promote_due()
    assert claim(adapter) == []


@pytest.mark.parametrize("outcome", ["retry", "release"])
def test_a_run_ended_cancelled_by_its_outcome_is_capped_too(adapter, outcome):
    adapter.options["DEAD_MAX_JOBS"] = 1
    jobs = [env() for _ in range(3)]
    adapter.enqueue_many(jobs)
    for running in claim(adapter):
        adapter.cancel([running.envelope.job_id])
        adapter.clock.advance(1)
        if outcome == "retry":
            adapter.retry(running, running.envelope, adapter.clock() + 30)
        else:
            adapter.release([running])
    assert adapter.counts().cancelled == 1


@pytest.mark.parametrize("outcome", ["complete", "kill"])
def test_a_run_that_succeeds_or_dies_ends_so_despite_a_request(adapter, outcome):
    job, other = env(), env()
    adapter.enqueue(job)
    [running] = claim(adapter)
    adapter.cancel([job.job_id])
    if outcome == "complete":
        adapter.complete([running])
        assert adapter.get(job.job_id) is None or adapter.get(job.job_id).state not in ("cancelled", "running")
    else:
        adapter.kill(running, running.envelope)
        assert adapter.get(job.job_id).state == "dead"
    assert adapter.cancel_requested(job.job_id) is False
    adapter.enqueue(other)  # the request was the job's own: a later job is not affected
    [nxt] = claim(adapter)
    assert adapter.cancel_requested(nxt.envelope.job_id) is False


def test_a_cancelled_run_is_fenced_by_its_lease(adapter):
    job = env()
    adapter.enqueue(job)
    [stale] = claim(adapter)
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    adapter.recover_expired()
    [fresh] = claim(adapter)
    adapter.cancel_run(stale, stale.envelope)
    assert adapter.get(job.job_id).state == "running"
    adapter.complete([fresh])


def test_a_cancelled_unique_job_lets_its_key_go(adapter):
    meta = {"unique": {"key": "u1", "expires": adapter.clock() + 3600, "until": "finish", "conflict": "skip"}}
    first = env(meta=dict(meta))
    assert adapter.enqueue(first) is None
    assert adapter.enqueue(env(meta=dict(meta))) == first.job_id
    adapter.cancel([first.job_id])
    second = env(meta=dict(meta))
    assert adapter.enqueue(second) is None
    assert adapter.get(second.job_id).state == "ready"


def test_cancelling_a_job_with_a_concurrency_slot_admits_the_next(adapter):
    meta = {"concurrency": {"key": "c1", "limit": 1}}
    jobs = [env(meta=dict(meta)) for _ in range(3)]
    adapter.enqueue_many(jobs)
    assert [r.job_id for r in adapter.jobs("blocked", per_page=10).items] == [jobs[1].job_id, jobs[2].job_id]
    assert adapter.cancel([jobs[1].job_id]) == {jobs[1].job_id: "cancelled"}  # blocked: out of the line
    assert [r.job_id for r in adapter.jobs("blocked", per_page=10).items] == [jobs[2].job_id]
    assert adapter.cancel([jobs[0].job_id]) == {jobs[0].job_id: "cancelled"}  # ready: its slot goes
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[2].job_id]
    assert adapter.counts().blocked == 0


def test_a_cancelled_running_job_with_a_slot_lets_it_go_on_release(adapter):
    meta = {"concurrency": {"key": "c2", "limit": 1}}
    jobs = [env(meta=dict(meta)) for _ in range(2)]
    adapter.enqueue_many(jobs)
    [running] = claim(adapter)
    adapter.cancel([jobs[0].job_id])
    adapter.release([running])
    adapter.promote_due()  # (the database adapter may admit in its repair pass)
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[1].job_id]


def test_cancelled_jobs_are_capped_like_the_dead_set(adapter):
    adapter.options["DEAD_MAX_JOBS"] = 2
    jobs = [env() for _ in range(4)]
    adapter.enqueue_many(jobs)
    for job in jobs:
        adapter.cancel([job.job_id])
        adapter.clock.advance(1)
    assert adapter.counts().cancelled == 2
    assert cancelled_ids(adapter) == [jobs[3].job_id, jobs[2].job_id]
