"""Unique jobs in the adapter contract (djjobs/adapters/base.py, djjobs/uniqueness.py),
on every adapter: the key is held exactly while its job holds it."""
import pytest

from djjobs.adapters.base import Claim
from djjobs.envelope import Envelope

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def unique_env(adapter, key="k", *, until="finish", conflict="skip", ttl=3600.0, **kw):
    return Envelope(job="tests.jobs.EchoJob", meta={"unique": {"key": key, "expires": adapter.clock() + ttl,
                                                               "until": until, "conflict": conflict}}, **kw)


def claim_all(adapter, limit=100) -> list[Claim]:
    return adapter.fetch(["default"], limit, 0, W)


def ready_ids(adapter):
    return [r.job_id for r in adapter.jobs("ready", per_page=100).items]


def test_a_held_key_refuses_the_second_enqueue_and_names_the_holder(adapter):
    first, second = unique_env(adapter), unique_env(adapter)
    assert adapter.enqueue(first) is None
    assert adapter.enqueue(second) == first.job_id
    assert ready_ids(adapter) == [first.job_id]
    assert [h.job_id for h in adapter.unique_holds()] == [first.job_id]


def test_different_keys_and_plain_jobs_do_not_conflict(adapter):
    a, b = unique_env(adapter, "a"), unique_env(adapter, "b")
    plain = Envelope(job="tests.jobs.EchoJob")
    assert adapter.enqueue_many([a, b, plain]) == {}
    assert sorted(ready_ids(adapter)) == sorted([a.job_id, b.job_id, plain.job_id])


def test_bulk_enqueue_honours_keys_within_and_across_calls(adapter):
    held = unique_env(adapter, "x")
    adapter.enqueue(held)
    batch = [unique_env(adapter, "x"), unique_env(adapter, "y"), unique_env(adapter, "y"), Envelope(job="tests.jobs.EchoJob")]
    assert adapter.enqueue_many(batch) == {batch[0].job_id: held.job_id, batch[2].job_id: batch[1].job_id}
    assert len(ready_ids(adapter)) == 3


@pytest.mark.parametrize("until", ["finish", "start"])
def test_the_key_is_held_while_queued_and_running_until_it_finishes(adapter, until):
    job = unique_env(adapter, until=until)
    adapter.enqueue(job)
    [claim] = claim_all(adapter)
    running_holder = adapter.enqueue(unique_env(adapter, until=until))
    if until == "finish":
        assert running_holder == job.job_id
    else:  # let go when the job started: the second one is stored
        assert running_holder is None
        assert len(ready_ids(adapter)) == 1
    adapter.complete([claim])
    if until == "finish":
        again = unique_env(adapter, until=until)
        assert adapter.enqueue(again) is None


def test_fetch_acknowledgement_frees_the_key(adapter):
    adapter.enqueue(unique_env(adapter))
    [claim] = claim_all(adapter)
    adapter.fetch(["default"], 10, 0, W, complete=[claim])
    assert adapter.enqueue(unique_env(adapter)) is None
    assert adapter.unique_holds()[0].job_id != claim.envelope.job_id


def test_retry_and_reschedule_keep_the_key_and_death_frees_it(adapter):
    job = unique_env(adapter)
    adapter.enqueue(job)
    [claim] = claim_all(adapter)
    adapter.retry(claim, claim.envelope, adapter.clock() + 60)
    assert adapter.enqueue(unique_env(adapter)) == job.job_id
    adapter.clock.advance(61)
    adapter.promote_due()
    [claim] = claim_all(adapter)
    adapter.reschedule(claim, claim.envelope, adapter.clock() + 60)
    assert adapter.enqueue(unique_env(adapter)) == job.job_id
    adapter.clock.advance(61)
    adapter.promote_due()
    [claim] = claim_all(adapter)
    adapter.kill(claim, claim.envelope)
    assert adapter.enqueue(unique_env(adapter)) is None
    # and a dead job retried by hand does not take its key back from the new holder
    adapter.retry_now([job.job_id])
    assert adapter.enqueue(unique_env(adapter)) is not None


def test_a_released_claim_keeps_its_key(adapter):
    """A stopping worker hands the job back: it is queued again and still holds its key."""
    job = unique_env(adapter, until="start")
    adapter.enqueue(job)
    claims = claim_all(adapter)
    adapter.release(claims)
    assert adapter.enqueue(unique_env(adapter, until="start")) == job.job_id


def test_a_dead_workers_job_keeps_its_key_until_recovery_decides(adapter):
    job = unique_env(adapter)
    adapter.enqueue(job)
    claim_all(adapter)
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.enqueue(unique_env(adapter)) == job.job_id  # lease expired, not recovered yet
    assert adapter.recover_expired() == 1  # back to its queue: still the holder
    assert adapter.enqueue(unique_env(adapter)) == job.job_id
    for _ in range(adapter.setting("MAX_WORKER_DEATHS")):
        claim_all(adapter)
        adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
        adapter.recover_expired()
    assert adapter.get(job.job_id).state == "dead"  # a poison pill now: the key is free
    assert adapter.enqueue(unique_env(adapter)) is None


def test_the_key_expires_after_unique_for_whatever_the_state(adapter):
    job = unique_env(adapter, ttl=10)
    adapter.enqueue(job)
    assert adapter.enqueue(unique_env(adapter, ttl=10)) == job.job_id
    adapter.clock.advance(11)
    late = unique_env(adapter, ttl=10)
    assert adapter.enqueue(late) is None
    assert sorted(ready_ids(adapter)) == sorted([job.job_id, late.job_id])


def test_deleted_and_cleared_jobs_free_their_keys(adapter):
    job = unique_env(adapter)
    adapter.enqueue(job)
    adapter.delete([job.job_id])
    second = unique_env(adapter)
    assert adapter.enqueue(second) is None
    adapter.clear("default")
    assert adapter.enqueue(unique_env(adapter)) is None


def test_kill_now_frees_the_key(adapter):
    job = unique_env(adapter)
    job.run_at = adapter.clock() + 300
    adapter.enqueue(job)
    assert adapter.kill_now([job.job_id]) == 1
    assert adapter.enqueue(unique_env(adapter)) is None


@pytest.mark.parametrize("where", ["ready", "scheduled"])
def test_replace_deletes_a_holder_that_has_not_started(adapter, where):
    old = unique_env(adapter, conflict="replace", args=["old"])
    if where == "scheduled":
        old.run_at = adapter.clock() + 300
    adapter.enqueue(old)
    new = unique_env(adapter, conflict="replace", args=["new"])
    assert adapter.enqueue(new) is None
    assert adapter.get(old.job_id) is None
    assert [c.envelope.args for c in claim_all(adapter)] == [["new"]]
    assert adapter.counts().scheduled == 0


def test_replace_lets_a_running_holder_finish_and_the_new_job_takes_the_key(adapter):
    old = unique_env(adapter, conflict="replace")
    adapter.enqueue(old)
    [running] = claim_all(adapter)
    new = unique_env(adapter, conflict="replace")
    assert adapter.enqueue(new) is None
    adapter.complete([running])  # the old job's ack does not free the new job's key
    assert adapter.enqueue(unique_env(adapter)) == new.job_id


def test_release_by_hand(adapter):
    job = unique_env(adapter)
    adapter.enqueue(job)
    assert adapter.release_unique("k") is True
    assert adapter.enqueue(unique_env(adapter)) is None
    assert adapter.release_unique("nothing-held") is False


def test_unique_holds_lists_only_keys_held_now(adapter):
    a, b = unique_env(adapter, "a"), unique_env(adapter, "b", until="start")
    adapter.enqueue_many([a, b])
    assert {(h.key, h.job_id, h.until) for h in adapter.unique_holds()} == {("a", a.job_id, "finish"),
                                                                            ("b", b.job_id, "start")}
    claim_all(adapter)  # b started: no longer held; a running: held
    assert [h.key for h in adapter.unique_holds()] == ["a"]
