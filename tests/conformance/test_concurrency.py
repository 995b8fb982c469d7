"""Concurrency limits in the adapter contract (djjobs/adapters/base.py, djjobs/concurrency.py),
on every adapter: slots taken when a job becomes ready, let go with its outcome, blocked
jobs admitted in FIFO order."""
import pytest

from djjobs.envelope import Envelope

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def limited(key="k", limit=2, **kw):
    return Envelope(job="tests.jobs.EchoJob", meta={"concurrency": {"key": key, "limit": limit}}, **kw)


def claim(adapter, limit=100):
    return adapter.fetch(["default"], limit, 0, W)


def ids(records):
    return [r.job_id for r in records]


def blocked_ids(adapter):
    return ids(adapter.jobs("blocked", per_page=100).items)


def test_jobs_over_the_limit_are_blocked_in_fifo_order_and_not_fetched(adapter):
    jobs = [limited() for _ in range(5)]
    adapter.enqueue_many(jobs[:3])
    for job in jobs[3:]:
        adapter.enqueue(job)
    assert blocked_ids(adapter) == [j.job_id for j in jobs[2:]]
    counts = adapter.counts()
    assert (counts.enqueued, counts.blocked) == (2, 3)
    assert sorted(c.envelope.job_id for c in claim(adapter)) == sorted(j.job_id for j in jobs[:2])
    assert claim(adapter) == []
    assert adapter.get(jobs[4].job_id).state == "blocked"


def test_an_outcome_admits_the_oldest_blocked_job(adapter):
    jobs = [limited() for _ in range(4)]
    adapter.enqueue_many(jobs)
    first, second = claim(adapter)
    adapter.complete([first])
    [third] = claim(adapter)
    assert third.envelope.job_id == jobs[2].job_id
    # the fetch's acknowledgement admits too, in time for the same fetch to claim it
    [fourth] = adapter.fetch(["default"], 10, 0, W, complete=[second])
    assert fourth.envelope.job_id == jobs[3].job_id and blocked_ids(adapter) == []


@pytest.mark.parametrize("outcome", ["retry", "reschedule", "kill"])
def test_retry_reschedule_and_death_let_the_slot_go(adapter, outcome):
    jobs = [limited(limit=1) for _ in range(2)]
    adapter.enqueue_many(jobs)
    [running] = claim(adapter)
    if outcome == "kill":
        adapter.kill(running, running.envelope)
    else:
        getattr(adapter, outcome)(running, running.envelope, adapter.clock() + 30)
    [nxt] = claim(adapter)
    assert nxt.envelope.job_id == jobs[1].job_id
    if outcome != "kill":  # due again while the other runs: it waits for the slot
        adapter.clock.advance(31)
        adapter.promote_due()
        assert blocked_ids(adapter) == [jobs[0].job_id]
        adapter.complete([nxt])
        [again] = claim(adapter)
        assert again.envelope.job_id == jobs[0].job_id


def test_a_released_claim_and_a_recovered_job_keep_their_slots(adapter):
    jobs = [limited(limit=1) for _ in range(2)]
    adapter.enqueue_many(jobs)
    adapter.release(claim(adapter))  # a stopping worker hands it back: still its slot
    assert blocked_ids(adapter) == [jobs[1].job_id]
    [running] = claim(adapter)
    assert running.envelope.job_id == jobs[0].job_id
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 1  # its worker died: queued again, slot kept
    assert blocked_ids(adapter) == [jobs[1].job_id]
    for _ in range(adapter.setting("MAX_WORKER_DEATHS") - 1):
        claim(adapter)
        adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
        adapter.recover_expired()
    assert adapter.get(jobs[0].job_id).state == "dead"  # a poison pill: the slot goes to the next
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[1].job_id]


def test_a_slot_is_let_go_once_however_often_the_outcome_is_reported(adapter):
    jobs = [limited(limit=1) for _ in range(3)]
    adapter.enqueue_many(jobs)
    [running] = claim(adapter)
    adapter.complete([running])
    adapter.complete([running])  # a repeated ack (a resent call): nothing more is admitted
    adapter.fetch(["default"], 0, 0, W, complete=[running])
    assert len(claim(adapter)) == 1
    assert blocked_ids(adapter) == [jobs[2].job_id]


def test_keys_are_independent_and_plain_jobs_unaffected(adapter):
    a = [limited("a", 1) for _ in range(2)]
    b = [limited("b", 1) for _ in range(2)]
    plain = Envelope(job="tests.jobs.EchoJob")
    adapter.enqueue_many([*a, *b, plain])
    assert sorted(c.envelope.job_id for c in claim(adapter)) == sorted([a[0].job_id, b[0].job_id, plain.job_id])
    assert sorted(blocked_ids(adapter)) == sorted([a[1].job_id, b[1].job_id])


def test_a_scheduled_job_takes_its_slot_when_due(adapter):
    holder = limited(limit=1)
    later = limited(limit=1, run_at=adapter.clock() + 10)
    adapter.enqueue_many([holder, later])
    assert adapter.counts().scheduled == 1 and blocked_ids(adapter) == []
    adapter.clock.advance(11)
    adapter.promote_due()
    assert blocked_ids(adapter) == [later.job_id]


def test_deleting_blocked_and_ready_jobs(adapter):
    jobs = [limited(limit=1) for _ in range(3)]
    adapter.enqueue_many(jobs)
    assert adapter.delete([jobs[1].job_id]) == 1  # a blocked one: gone from the line
    assert blocked_ids(adapter) == [jobs[2].job_id]
    assert adapter.delete([jobs[0].job_id]) == 1  # the ready holder: its slot goes to the next
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[2].job_id]


def test_clearing_a_queue_admits_the_blocked_jobs(adapter):
    jobs = [limited(limit=1) for _ in range(2)]
    adapter.enqueue_many(jobs)
    assert adapter.clear("default") == 1
    assert [c.envelope.job_id for c in claim(adapter)] == [jobs[1].job_id]


def test_retry_now_of_a_dead_job_waits_for_a_slot(adapter):
    jobs = [limited(limit=1) for _ in range(2)]
    adapter.enqueue(jobs[0])
    [running] = claim(adapter)
    adapter.kill(running, running.envelope)
    adapter.enqueue(jobs[1])
    assert adapter.retry_now([jobs[0].job_id]) == 1
    assert blocked_ids(adapter) == [jobs[0].job_id]


def test_concurrency_uses_lists_holders_and_blocked(adapter):
    jobs = [limited("k", 2) for _ in range(3)]
    adapter.enqueue_many(jobs)
    claim(adapter, 1)
    [use] = adapter.concurrency_uses()
    assert (use.key, use.limit, sorted(use.holders), use.blocked) == ("k", 2, sorted([jobs[0].job_id, jobs[1].job_id]), 1)


def test_a_blocked_unique_job_holds_its_key(adapter):
    """A job waiting for a concurrency slot is queued as far as its uniqueness key goes."""
    def both(unique_key):
        env = limited(limit=1)
        env.meta["unique"] = {"key": unique_key, "expires": adapter.clock() + 600, "until": "finish",
                              "conflict": "skip"}
        return env
    adapter.enqueue(both("u1"))
    waiting = both("u2")
    adapter.enqueue(waiting)
    assert blocked_ids(adapter) == [waiting.job_id]
    assert adapter.enqueue(both("u2")) == waiting.job_id
