"""Progress in the adapter contract (djjobs/adapters/base.py ``save_progress``; djjobs/continuations.py),
on every adapter: a running job's payload is replaced, fenced by its lease, and nothing else about it
changes; release, lease recovery and outcomes start from the payload last saved."""
import pytest

from djjobs.continuations import with_progress
from djjobs.envelope import Envelope

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def env(**kw):
    return Envelope(job="tests.jobs.EchoJob", **kw)


def progress(cursor, completed=("a",), resumptions=0):
    return {"completed": list(completed), "current": ["b", cursor], "resumptions": resumptions}


def fetch_one(adapter):
    claims = adapter.fetch(["default"], 1, 0, W)
    assert len(claims) == 1
    return claims[0]


def test_saved_progress_replaces_the_payload_and_nothing_else(adapter):
    adapter.enqueue(job := env())
    adapter.enqueue(other := env())
    claim = fetch_one(adapter)
    assert claim.envelope.job_id == job.job_id
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(7))) is True
    record = adapter.get(job.job_id)
    assert record.state == "running" and record.envelope.meta["progress"] == progress(7)
    assert record.envelope.executions == claim.envelope.executions
    counts = adapter.counts()
    assert (counts.busy, counts.enqueued, counts.processed, counts.failed) == (1, 1, 0, 0)
    assert [c.envelope.job_id for c in adapter.fetch(["default"], 10, 0, W)] == [other.job_id]
    adapter.complete([claim])
    assert adapter.get(job.job_id) is None or adapter.get(job.job_id).state not in ("running", "ready")


def test_saved_progress_then_release_resumes_from_it_at_the_front(adapter):
    adapter.enqueue_many([job := env(), later := env()])
    claim = fetch_one(adapter)
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(3)))
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(4, resumptions=1)))
    adapter.release([claim])
    again = fetch_one(adapter)
    assert again.envelope.job_id == job.job_id != later.job_id
    assert again.envelope.meta["progress"] == progress(4, resumptions=1)
    assert (again.envelope.executions, again.envelope.deaths) == (0, 0)
    assert adapter.counts().failed == 0


def test_lease_recovery_resumes_from_the_last_saved_progress(adapter):
    adapter.enqueue(job := env())
    claim = fetch_one(adapter)
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(12)))
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 1
    again = fetch_one(adapter)
    assert again.envelope.job_id == job.job_id
    assert again.envelope.meta["progress"] == progress(12)
    assert again.envelope.deaths == 1


def test_a_claim_no_longer_held_saves_nothing(adapter):
    adapter.enqueue(job := env())
    stale = fetch_one(adapter)
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 1
    current = fetch_one(adapter)
    assert adapter.save_progress(current, with_progress(current.envelope, progress(5)))
    assert adapter.save_progress(stale, with_progress(stale.envelope, progress(99))) is False
    assert adapter.get(job.job_id).envelope.meta["progress"] == progress(5)
    adapter.complete([current])
    assert adapter.save_progress(current, with_progress(current.envelope, progress(6))) is False
    record = adapter.get(job.job_id)
    assert record is None or record.state not in ("running", "ready")


def test_a_retry_keeps_the_progress_its_envelope_carries(adapter):
    adapter.enqueue(job := env())
    claim = fetch_one(adapter)
    adapter.save_progress(claim, with_progress(claim.envelope, progress(2)))
    failed = with_progress(claim.envelope.copy(executions=1), progress(3))
    adapter.retry(claim, failed, adapter.clock() + 5)
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(4))) is False
    adapter.clock.advance(6)
    adapter.promote_due()
    again = fetch_one(adapter)
    assert again.envelope.job_id == job.job_id and again.envelope.meta["progress"] == progress(3)


def test_release_of_a_job_cancelled_meanwhile_ends_it_cancelled_with_its_progress(adapter):
    adapter.enqueue(job := env())
    claim = fetch_one(adapter)
    assert adapter.cancel([job.job_id]) == {job.job_id: "cancelling"}
    assert adapter.save_progress(claim, with_progress(claim.envelope, progress(8)))
    adapter.release([claim])
    record = adapter.get(job.job_id)
    assert record.state == "cancelled" and record.envelope.meta["progress"] == progress(8)
