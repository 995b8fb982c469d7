"""Prerequisites in the adapter contract (djjobs/adapters/base.py, djjobs/prerequisites.py), on
every adapter: a job waits while a prerequisite has not ended, is released by the step that
stores its last prerequisite's success, and follows its policy when one ends badly."""
import pytest

from djjobs.envelope import Envelope

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def env(**kw):
    return Envelope(job="tests.jobs.EchoJob", **kw)


def after(*parents, fails="dead", **kw):
    return env(meta={"after": {"ids": [p.job_id for p in parents], "fails": fails}}, **kw)


def claim(adapter, limit=100):
    return adapter.fetch(["default"], limit, 0, W)


def claim_ids(adapter):
    return sorted(c.envelope.job_id for c in claim(adapter))


def state(adapter, job):
    record = adapter.get(job.job_id)
    return record.state if record else None


def run_one(adapter, job):
    """Claim everything ready, keep ``job``'s claim, release the others."""
    claims = claim(adapter)
    mine = [c for c in claims if c.envelope.job_id == job.job_id]
    adapter.release([c for c in claims if c.envelope.job_id != job.job_id])
    assert mine, f"{job.job_id} was not ready"
    return mine[0]


def test_a_job_waits_until_its_last_prerequisite_succeeds(adapter):
    a, b = env(), env()
    adapter.enqueue_many([a, b])
    child = after(a, b)
    adapter.enqueue(child)
    assert state(adapter, child) == "waiting"
    counts = adapter.counts()
    assert (counts.waiting, counts.enqueued) == (1, 2)
    assert [r.job_id for r in adapter.jobs("waiting").items] == [child.job_id]
    ca, cb = claim(adapter)
    adapter.complete([ca])
    assert state(adapter, child) == "waiting" and claim(adapter) == []
    adapter.fetch(["default"], 0, 0, W, complete=[cb])  # the ack that rides on a fetch releases too
    assert state(adapter, child) == "ready"
    assert claim_ids(adapter) == [child.job_id]
    assert adapter.counts().waiting == 0


def test_a_retry_is_not_an_end_and_a_chain_runs_in_order(adapter):
    a = env()
    adapter.enqueue(a)
    b = after(a)
    adapter.enqueue(b)
    c = after(b)
    adapter.enqueue(c)
    [ca] = claim(adapter)
    adapter.retry(ca, ca.envelope, adapter.clock() + 10)
    assert (state(adapter, b), state(adapter, c)) == ("waiting", "waiting")
    adapter.clock.advance(11)
    adapter.promote_due()
    [ca] = claim(adapter)
    adapter.complete([ca])
    [cb] = claim(adapter)
    assert cb.envelope.job_id == b.job_id and state(adapter, c) == "waiting"
    adapter.complete([cb])
    assert claim_ids(adapter) == [c.job_id]


def test_prerequisites_ended_before_the_enqueue(adapter):
    done, dead, cancelled = env(), env(), env()
    adapter.enqueue_many([done, dead, cancelled])
    adapter.cancel([cancelled.job_id])
    cdone = run_one(adapter, done)
    adapter.complete([cdone])
    cdead = run_one(adapter, dead)
    adapter.kill(cdead, cdead.envelope)
    ready = after(done, env())  # one finished, one never stored: both count as succeeded
    adapter.enqueue(ready)
    assert state(adapter, ready) == "ready"
    for parent, how in ((dead, "failed for good"), (cancelled, "was cancelled")):
        child = after(done, parent)
        adapter.enqueue(child)
        record = adapter.get(child.job_id)
        assert record.state == "dead"
        assert record.error["class"] == "djjobs.errors.PrerequisiteFailed"
        assert parent.job_id in record.error["message"] and how in record.error["message"]
    discarded = after(dead, fails="discard")
    adapter.enqueue(discarded)
    assert state(adapter, discarded) is None
    runs = after(dead, fails="run")
    adapter.enqueue(runs)
    assert state(adapter, runs) == "ready"


@pytest.mark.parametrize("how", ["kill", "discard", "cancel", "cancel_run", "delete", "kill_now", "recover"])
def test_a_prerequisite_that_ends_badly_sends_the_dependant_to_the_dead_set(adapter, how, settings):
    parent = env(run_at=adapter.clock() + 60) if how in ("kill_now", "delete") else env()
    adapter.enqueue(parent)
    child, grandchild = after(parent), None
    adapter.enqueue(child)
    grandchild = after(child)
    adapter.enqueue(grandchild)
    if how in ("kill", "discard", "cancel_run", "recover"):
        [c] = claim(adapter)
        if how == "kill":
            adapter.kill(c, c.envelope)
        elif how == "discard":
            adapter.discard(c)
        elif how == "cancel_run":
            adapter.cancel([parent.job_id])
            adapter.cancel_run(c, c.envelope)
        else:
            settings.DJJOBS = {**settings.DJJOBS, "MAX_WORKER_DEATHS": 1}
            adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
            assert adapter.recover_expired() == 1
    elif how == "cancel":
        adapter.cancel([parent.job_id])
    elif how == "delete":
        adapter.delete([parent.job_id])
    else:
        adapter.kill_now([parent.job_id])
    record = adapter.get(child.job_id)
    assert record.state == "dead" and record.error["class"] == "djjobs.errors.PrerequisiteFailed"
    assert parent.job_id in record.error["message"]
    down = adapter.get(grandchild.job_id)  # the failure goes down the chain
    assert down.state == "dead" and child.job_id in down.error["message"]
    assert adapter.counts().waiting == 0
    assert claim(adapter) == []


def test_policies_run_and_discard(adapter):
    bad, good = env(), env()
    adapter.enqueue_many([bad, good])
    runs, goes = after(bad, good, fails="run"), after(bad, fails="discard")
    adapter.enqueue_many([runs, goes])
    follower = after(goes, fails="run")
    adapter.enqueue(follower)
    cbad = run_one(adapter, bad)
    adapter.kill(cbad, cbad.envelope)
    assert state(adapter, goes) is None
    assert state(adapter, follower) == "ready"  # "run": its prerequisite was discarded, it runs anyway
    assert state(adapter, runs) == "waiting"  # "run": waits for every prerequisite to end
    cgood = run_one(adapter, good)
    adapter.complete([cgood])
    assert state(adapter, runs) == "ready"


def test_a_released_job_keeps_its_own_run_time_and_concurrency_limit(adapter):
    parent = env()
    adapter.enqueue(parent)
    later = after(parent, run_at=adapter.clock() + 60)
    limited = [env(meta={"after": {"ids": [parent.job_id], "fails": "dead"},
                         "concurrency": {"key": "pk", "limit": 1}}) for _ in range(2)]
    adapter.enqueue_many([later, *limited])
    [c] = claim(adapter)
    adapter.complete([c])
    adapter.promote_due()
    assert state(adapter, later) == "scheduled"
    assert sorted(state(adapter, j) for j in limited) == ["blocked", "ready"]
    adapter.clock.advance(61)
    adapter.promote_due()
    assert state(adapter, later) == "ready"


def test_a_waiting_job_can_be_cancelled_or_deleted_and_its_prerequisite_ends_well(adapter):
    parent = env()
    adapter.enqueue(parent)
    gone, kept = after(parent), after(parent)
    adapter.enqueue_many([gone, kept])
    assert adapter.cancel([gone.job_id]) == {gone.job_id: "cancelled"}
    dropped = after(parent)
    adapter.enqueue(dropped)
    assert adapter.delete([dropped.job_id]) == 1
    [c] = claim(adapter)
    adapter.complete([c])
    assert state(adapter, gone) == "cancelled" and state(adapter, dropped) is None
    assert claim_ids(adapter) == [kept.job_id]


def test_a_prerequisite_run_twice_counts_once(adapter):
    a, b = env(), env()
    adapter.enqueue_many([a, b])
    child = after(a, b)
    adapter.enqueue(child)
    stale = run_one(adapter, a)
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    adapter.recover_expired()  # a's worker "died": a runs again
    fresh = run_one(adapter, a)
    adapter.complete([fresh])
    adapter.complete([stale])  # the first run's late ack is fenced: nothing more counts
    assert state(adapter, child) == "waiting"
    cb = run_one(adapter, b)
    adapter.complete([cb])
    assert state(adapter, child) == "ready"
