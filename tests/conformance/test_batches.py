"""Batches in the adapter contract (djjobs/adapters/base.py, djjobs/batches.py), on every
adapter: a job counts in its batch from the step that stores it, is settled once by the step
that ends it, and that same step stores the callbacks it decides, each at most once."""
import pytest

from djjobs.batch_status import STATUS_PLACEHOLDER, BatchStatus
from djjobs.envelope import Envelope
from djjobs.errors import BatchFinished

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
counter = iter(range(1, 10_000))


def env(batch=None, **kw):
    meta = dict(kw.pop("meta", {}))
    if batch is not None:
        meta["batch"] = batch
    return Envelope(job="tests.jobs.EchoJob", meta=meta, **kw)


def callback(batch_id, event, queue="callbacks"):
    return Envelope(job="tests.jobs.EchoJob", args=[STATUS_PLACEHOLDER], queue=queue, enqueued_at=0,
                    meta={"batch_event": {"batch": batch_id, "event": event}})


def open_batch(adapter, events=("complete", "success", "death"), **kw):
    batch_id = f"batch-{next(counter)}"
    callbacks = {event: callback(batch_id, event) for event in events}
    adapter.open_batch(BatchStatus(id=batch_id, description="import", created_ts=adapter.clock(),
                                   properties={"rows": 3}, callbacks={e: c.job_id for e, c in callbacks.items()},
                                   **kw), callbacks)
    return batch_id, callbacks


def claim(adapter, queue="default", limit=100):
    return adapter.fetch([queue], limit, 0, W)


def fired(adapter):
    """The callbacks stored so far: {event: status dict}; each claimed (so counted once)."""
    out = {}
    for c in claim(adapter, "callbacks"):
        status = c.envelope.args[0]
        assert c.envelope.meta["batch_event"]["event"] == status["event"]
        assert status["event"] not in out, "a callback was stored twice"
        out[status["event"]] = status
        adapter.complete([c])
    return out


def test_a_batch_completes_when_its_last_job_succeeds_after_it_closed(adapter, clock):
    batch_id, callbacks = open_batch(adapter)
    jobs = [env(batch_id) for _ in range(3)]
    adapter.enqueue_many(jobs[:2])
    adapter.enqueue(jobs[2])
    s = adapter.batch_status(batch_id)
    assert (s.total, s.pending, s.succeeded, s.closed, s.complete) == (3, 3, 0, False, False)
    assert (s.description, s.properties) == ("import", {"rows": 3})
    c1, c2, c3 = claim(adapter)
    adapter.complete([c1])
    adapter.fetch(["default"], 0, 0, W, complete=[c2])  # the ack riding on a fetch settles too
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.succeeded, s.complete) == (1, 2, False)
    adapter.close_batch(batch_id)
    assert not adapter.batch_status(batch_id).complete and fired(adapter) == {}
    clock.advance(5)
    adapter.complete([c3])
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.succeeded, s.complete, s.success) == (0, 3, True, True)
    assert s.completed_ts == pytest.approx(clock())
    got = fired(adapter)
    assert sorted(got) == ["complete", "success"]
    assert got["complete"]["total"] == 3 and got["complete"]["succeeded"] == 3
    assert got["complete"]["completed_ts"] == pytest.approx(clock())
    assert got["complete"]["id"] == batch_id
    assert adapter.batch_status(batch_id).callbacks == {e: c.job_id for e, c in callbacks.items()}
    adapter.close_batch(batch_id)  # closing again changes nothing
    assert fired(adapter) == {}


def test_a_fired_callback_is_stored_with_its_own_id_queue_and_enqueue_time(adapter, clock):
    batch_id, callbacks = open_batch(adapter, events=("complete",))
    clock.advance(7)
    adapter.close_batch(batch_id)
    (c,) = claim(adapter, "callbacks")
    assert c.envelope.job_id == callbacks["complete"].job_id
    assert c.envelope.enqueued_at == pytest.approx(clock())
    assert BatchStatus.from_dict(c.envelope.args[0]).complete


def test_an_empty_batch_completes_when_it_closes(adapter):
    batch_id, _ = open_batch(adapter)
    adapter.close_batch(batch_id)
    s = adapter.batch_status(batch_id)
    assert s.complete and s.success and s.total == 0
    assert sorted(fired(adapter)) == ["complete", "success"]


def test_the_first_death_fires_on_death_once_and_the_batch_completes_without_success(adapter):
    batch_id, _ = open_batch(adapter)
    a, b, c = env(batch_id), env(batch_id), env(batch_id)
    adapter.enqueue_many([a, b, c])
    adapter.close_batch(batch_id)
    ca, cb, cc = claim(adapter)
    adapter.kill(ca, None, {"class": "ValueError", "message": "boom"})
    got = fired(adapter)
    assert list(got) == ["death"] and got["death"]["dead"] == 1 and got["death"]["completed_ts"] is None
    adapter.kill(cb, None, {"class": "ValueError", "message": "again"})
    assert fired(adapter) == {}
    assert sorted(adapter.batch_failures(batch_id)) == sorted([a.job_id, b.job_id])
    adapter.complete([cc])
    s = adapter.batch_status(batch_id)
    assert (s.complete, s.success, s.dead, s.succeeded, s.failed) == (True, False, 2, 1, 2)
    assert list(fired(adapter)) == ["complete"]


def test_retries_releases_and_lease_recovery_are_not_ends(adapter, clock):
    batch_id, _ = open_batch(adapter)
    job = env(batch_id)
    adapter.enqueue(job)
    adapter.close_batch(batch_id)
    (c,) = claim(adapter)
    adapter.retry(c, c.envelope.started(), clock() + 1)
    clock.advance(2)
    adapter.promote_due()
    (c,) = claim(adapter)
    adapter.release([c])
    (c,) = claim(adapter)
    clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    adapter.recover_expired()  # its worker died: back to ready, not an end
    assert adapter.batch_status(batch_id).pending == 1 and fired(adapter) == {}
    adapter.complete([c])  # the dead worker's late ack is fenced: settles nothing
    assert adapter.batch_status(batch_id).pending == 1
    (again,) = claim(adapter)
    adapter.complete([again])
    adapter.complete([again])  # acknowledged twice: settled once
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.succeeded, s.total) == (0, 1, 1)
    assert sorted(fired(adapter)) == ["complete", "success"]


def test_discarded_deleted_and_cancelled_jobs_are_ends(adapter):
    batch_id, _ = open_batch(adapter, events=("complete",))
    a, b, c, d = (env(batch_id) for _ in range(4))
    adapter.enqueue_many([a, b, c, d])
    adapter.close_batch(batch_id)
    assert adapter.cancel([c.job_id]) == {c.job_id: "cancelled"}
    assert adapter.delete([d.job_id]) == 1
    claims = {cl.envelope.job_id: cl for cl in claim(adapter)}
    adapter.discard(claims[a.job_id])
    assert adapter.cancel([b.job_id]) == {b.job_id: "cancelling"}
    adapter.cancel_run(claims[b.job_id], claims[b.job_id].envelope)
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.discarded, s.cancelled, s.complete, s.success) == (0, 2, 2, True, False)
    assert sorted(adapter.batch_failures(batch_id)) == sorted([b.job_id, c.job_id])
    assert list(fired(adapter)) == ["complete"]


def test_a_dependant_ended_by_its_prerequisite_is_settled_too(adapter):
    batch_id, _ = open_batch(adapter, events=("complete", "death"))
    parent = env(batch_id)
    child = env(batch_id, meta={"after": {"ids": [parent.job_id], "fails": "dead"}})
    spare = env(batch_id, meta={"after": {"ids": [child.job_id], "fails": "discard"}})
    adapter.enqueue_many([parent, child, spare])
    adapter.close_batch(batch_id)
    (c,) = claim(adapter)
    adapter.kill(c, None, {"class": "ValueError", "message": "boom"})
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.dead, s.discarded, s.complete) == (0, 2, 1, True)
    assert sorted(fired(adapter)) == ["complete", "death"]


def test_a_job_that_ends_as_it_is_stored_counts_ended(adapter):
    gone = env()
    adapter.enqueue(gone)
    (c,) = claim(adapter)
    adapter.kill(c, None, {"class": "ValueError", "message": "boom"})
    batch_id, _ = open_batch(adapter, events=("death",))
    adapter.enqueue(env(batch_id, meta={"after": {"ids": [gone.job_id], "fails": "dead"}}))
    s = adapter.batch_status(batch_id)
    assert (s.total, s.pending, s.dead) == (1, 0, 1)
    assert list(fired(adapter)) == ["death"]


def test_enqueueing_into_a_complete_or_unknown_batch_stores_nothing(adapter):
    batch_id, _ = open_batch(adapter, events=())
    adapter.close_batch(batch_id)
    for target in (batch_id, "no-such-batch"):
        plain, member = env(), env(target)
        with pytest.raises(BatchFinished) as caught:
            adapter.enqueue_many([plain, member])
        assert caught.value.batch_id == target and target in str(caught.value)
        with pytest.raises(BatchFinished):
            adapter.enqueue(env(target))
        assert adapter.get(plain.job_id) is None and adapter.get(member.job_id) is None
    assert adapter.batch_status(batch_id).total == 0


def test_a_closed_batch_with_jobs_pending_takes_more(adapter):
    batch_id, _ = open_batch(adapter, events=("complete",))
    first = env(batch_id)
    adapter.enqueue(first)
    adapter.close_batch(batch_id)
    (c,) = claim(adapter)
    adapter.enqueue(env(batch_id))  # the running job adds one (self.batch.add)
    adapter.complete([c])
    assert not adapter.batch_status(batch_id).complete
    (c,) = claim(adapter)
    adapter.complete([c])
    s = adapter.batch_status(batch_id)
    assert (s.total, s.succeeded, s.complete) == (2, 2, True)
    assert list(fired(adapter)) == ["complete"]


def test_batches_are_listed_newest_first_and_an_unknown_one_is_none(adapter, clock):
    first, _ = open_batch(adapter, events=())
    clock.advance(1)
    second, _ = open_batch(adapter, events=())
    page = adapter.batches(page=1, per_page=10)
    assert [s.id for s in page.items] == [second, first] and page.total == 2
    assert adapter.batch_status("no-such-batch") is None


def test_a_holder_replaced_by_a_unique_enqueue_is_an_end(adapter):
    from djjobs.uniqueness import UniqueLock
    batch_id, _ = open_batch(adapter, events=("complete",))
    lock = UniqueLock("k", adapter.clock() + 3600, "finish", "replace").as_meta()
    old = env(batch_id, meta={"unique": lock})
    adapter.enqueue(old)
    waiter = env(batch_id, meta={"after": {"ids": [old.job_id], "fails": "dead"}})
    adapter.enqueue(waiter)
    adapter.close_batch(batch_id)
    assert adapter.enqueue(env(meta={"unique": lock})) is None  # replaces the queued holder
    s = adapter.batch_status(batch_id)
    assert (s.total, s.pending, s.discarded, s.dead, s.complete) == (2, 0, 1, 1, True)
    record = adapter.get(waiter.job_id)
    assert record.state == "dead" and old.job_id in record.error["message"]


def test_an_interrupted_continuation_is_not_an_end(adapter):
    """A stopping worker saves a continuation's progress and releases it (docs/continuations.md):
    the batch keeps it pending; its later success settles it once."""
    batch_id, _ = open_batch(adapter, events=("complete",))
    job = env(batch_id)
    adapter.enqueue(job)
    adapter.close_batch(batch_id)
    (c,) = claim(adapter)
    progressed = c.envelope.copy(meta={**c.envelope.meta, "progress": {"completed": ["a"], "current": None,
                                                                        "resumptions": 1}})
    assert adapter.save_progress(c, progressed)
    adapter.release([c])
    assert adapter.batch_status(batch_id).pending == 1 and fired(adapter) == {}
    (again,) = claim(adapter)
    assert again.envelope.meta["progress"]["completed"] == ["a"]
    adapter.complete([again])
    s = adapter.batch_status(batch_id)
    assert (s.pending, s.succeeded, s.complete) == (0, 1, True)
