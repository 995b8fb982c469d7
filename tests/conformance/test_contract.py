"""The adapter contract (djjobs/adapters/base.py), checked against every adapter.

A behaviour that only one adapter's own tests cover does not exist yet: put it here.
"""
import time

import pytest
from django.test import override_settings

from djjobs.adapters.base import WorkerInfo
from djjobs.envelope import Envelope
from djjobs.errors import EnqueueError

W = "worker-1"
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def env(job="tests.jobs.EchoJob", queue="default", priority=0, **kw):
    return Envelope(job=job, queue=queue, priority=priority, **kw)


def fetch_ids(adapter, queues=("default",), limit=100, worker=W):
    return [c.envelope.job_id for c in adapter.fetch(list(queues), limit, 0, worker)]


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_enqueue_fetch_round_trips_the_payload_byte_exact(adapter, bulk):
    """Single and bulk enqueues take different paths (a bulk is one COPY on PostgreSQL,
    grouped script calls on Redis): both store the bytes unchanged."""
    tricky = [env(args=["nul\x00byte", "astral \U0001F600 \U00010348", 2**62, -(2**63), i],
                  kwargs={"nested": {"k": [1.5, None, True]}}) for i in range(3 if bulk else 1)]
    adapter.enqueue_many(tricky) if bulk else adapter.enqueue(tricky[0])
    claims = adapter.fetch(["default"], 10, 0, W)
    assert [c.raw for c in claims] == [t.encode() for t in tricky]
    assert [c.envelope for c in claims] == tricky
    assert all(c.worker_id == W and c.lease_until > adapter.clock() for c in claims)


def test_fifo_within_a_queue_and_priority_first(adapter):
    jobs = [env(), env(), env(priority=10), env(), env(priority=-5)]
    for j in jobs:
        adapter.enqueue(j)
    expected = [jobs[2].job_id, jobs[0].job_id, jobs[1].job_id, jobs[3].job_id, jobs[4].job_id]
    assert fetch_ids(adapter) == expected


def test_queues_are_fetched_in_the_order_given(adapter):
    low, high = env(queue="low"), env(queue="mailers")
    adapter.enqueue(low)
    adapter.enqueue(high)
    assert fetch_ids(adapter, ["mailers", "low"], limit=1) == [high.job_id]
    assert fetch_ids(adapter, ["mailers", "low"], limit=1) == [low.job_id]
    assert fetch_ids(adapter, ["mailers", "low"], limit=1) == []


def test_fetch_respects_the_limit_and_each_job_is_claimed_once(adapter):
    jobs = [env() for _ in range(7)]
    adapter.enqueue_many(jobs)
    first = fetch_ids(adapter, limit=3)
    second = fetch_ids(adapter, limit=10, worker="worker-2")
    assert len(first) == 3 and len(second) == 4
    assert sorted(first + second) == sorted(j.job_id for j in jobs)


def test_fetch_on_an_empty_queue_returns_empty_within_the_timeout(adapter):
    adapter.clock = time.time
    started = time.monotonic()
    assert adapter.fetch(["default"], 5, 0.2, W) == []
    assert time.monotonic() - started < 3


def test_a_waiting_fetch_gets_a_job_enqueued_meanwhile_once(adapter):
    """An idle fetch is woken by a job enqueued while it waits (on Redis the job is handed
    to it in the wake-up itself); it is claimed once and acknowledged like any claim."""
    import threading
    adapter.clock = time.time
    got = []
    fetcher = threading.Thread(target=lambda: got.extend(adapter.fetch(["default"], 5, 10, W)))
    fetcher.start()
    time.sleep(0.3)  # the fetch is waiting by now
    job = env()
    adapter.enqueue(job)
    fetcher.join(15)
    assert [c.envelope.job_id for c in got] == [job.job_id]
    assert adapter.fetch(["default"], 5, 0, "worker-2") == []
    adapter.complete(got)
    counts = adapter.counts()
    assert (counts.processed, counts.busy, counts.enqueued) == (1, 0, 0)


def test_stop_waiting_returns_what_an_idle_fetch_left_unreceived(adapter):
    """A job enqueued after an idle fetch returned is either still ready or (Redis: handed
    to that fetcher, never read) returned by ``stop_waiting``; released, it is claimable
    once. Nothing waits for a lease."""
    adapter.clock = time.time
    assert adapter.fetch(["default"], 5, 0.05, W) == []
    job = env()
    adapter.enqueue(job)
    unreceived = adapter.stop_waiting(W)
    assert [c.envelope.job_id for c in unreceived] in ([], [job.job_id])
    adapter.release(unreceived)
    assert fetch_ids(adapter, worker="worker-2") == [job.job_id]
    assert adapter.stop_waiting(W) == [] and fetch_ids(adapter) == []
    counts = adapter.counts()
    assert (counts.busy, counts.enqueued) == (1, 0)


def test_scheduled_job_waits_for_its_time_then_is_promoted_once(adapter):
    later = env(run_at=adapter.clock() + 60)
    adapter.enqueue(later)
    assert adapter.counts().scheduled == 1
    assert fetch_ids(adapter) == []
    assert adapter.jobs("scheduled").items[0].job_id == later.job_id
    adapter.clock.advance(61)
    adapter.promote_due()
    adapter.promote_due()
    assert fetch_ids(adapter) == [later.job_id]
    assert adapter.counts().scheduled == 0


def test_every_move_keeps_the_job_in_its_own_queue_and_priority(adapter):
    job, low = env(queue="mail", priority=5, run_at=adapter.clock() + 10), env(queue="mail")
    gone = env(queue="mail", priority=2)
    adapter.enqueue_many([job, low, gone])
    assert (adapter.get(low.job_id).queue, adapter.get(job.job_id).queue) == ("mail", "mail")
    assert adapter.delete([gone.job_id]) == 1
    assert adapter.counts().enqueued == 1

    def next_in_mail():
        assert fetch_ids(adapter, ["default"]) == []
        [claim] = adapter.fetch(["mail"], 1, 0, W)
        assert claim.envelope.job_id == job.job_id  # priority 5, ahead of the ready priority-0 job
        return claim

    adapter.clock.advance(11)
    adapter.promote_due()
    claim = next_in_mail()
    adapter.release([claim])
    claim = next_in_mail()
    adapter.retry(claim, claim.envelope, adapter.clock() + 5)
    adapter.clock.advance(6)
    adapter.promote_due()
    claim = next_in_mail()
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 1
    claim = next_in_mail()
    adapter.kill(claim, claim.envelope)
    assert adapter.get(job.job_id).queue == "mail"
    assert (adapter.jobs("dead", queue="mail").total, adapter.jobs("dead", queue="default").total) == (1, 0)
    assert adapter.retry_now([job.job_id]) == 1
    next_in_mail()
    assert fetch_ids(adapter, ["mail"]) == [low.job_id]


def test_a_retry_into_another_queue_is_counted_there_once_promoted(adapter):
    job = env()
    adapter.enqueue(job)
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.retry(claim, claim.envelope.copy(queue="elsewhere"), adapter.clock() + 5)  # retry_on(queue=...)
    adapter.clock.advance(6)
    adapter.promote_due()
    assert [(q.name, q.size) for q in adapter.queues() if q.name == "elsewhere"] == [("elsewhere", 1)]
    assert adapter.counts().enqueued == 1
    assert fetch_ids(adapter, ["elsewhere"]) == [job.job_id]


def test_an_undecodable_payload_keeps_the_queue_it_was_stored_in(adapter):
    adapter.enqueue_raw(b"\x00not json", "rawq")
    [claim] = adapter.fetch(["rawq"], 1, 0, W)
    adapter.release([claim])
    assert fetch_ids(adapter) == []
    [claim] = adapter.fetch(["rawq"], 1, 0, W)
    assert claim.envelope is None and claim.raw == b"\x00not json"


def test_complete_forgets_the_job_and_counts_it(adapter):
    adapter.enqueue(env())
    claims = adapter.fetch(["default"], 1, 0, W)
    assert adapter.counts().busy == 1
    assert [r.job_id for r in adapter.jobs("running").items] == [claims[0].envelope.job_id]
    adapter.complete(claims)
    counts = adapter.counts()
    assert (counts.processed, counts.processed_today, counts.busy, counts.enqueued) == (1, 1, 0, 0)
    assert adapter.jobs("running").total == 0 and adapter.jobs("running").items == []
    assert adapter.get(claims[0].envelope.job_id) is None
    assert adapter.history(2)[-1][1:] == (1, 0)


def test_fetch_acknowledges_finished_claims_before_claiming(adapter):
    first, second = env(), env()
    adapter.enqueue_many([first, second])
    done = adapter.fetch(["default"], 1, 0, W)
    [claim] = adapter.fetch(["default"], 5, 0, W, complete=done)
    assert claim.envelope.job_id == second.job_id
    counts = adapter.counts()
    assert (counts.processed, counts.busy) == (1, 1)
    assert adapter.get(first.job_id) is None
    assert adapter.fetch(["default"], 5, 0, W, complete=done) == []  # a second ack is harmless
    assert adapter.counts().processed == 1


def test_batches_larger_than_a_thousand_are_claimed_in_order_and_acknowledged_whole(adapter):
    """Adapters split big batches internally (Lua's unpack limit, SQL parameter limits):
    the split must not show."""
    jobs = [env() for _ in range(9000)]  # beyond Lua's 8,000 unpacked values
    adapter.enqueue_many(jobs)
    claims = adapter.fetch(["default"], 8900, 0, W)
    assert [c.envelope.job_id for c in claims] == [j.job_id for j in jobs[:8900]]
    rest = adapter.fetch(["default"], 8900, 0, W, complete=claims + claims[:5])  # repeated acks count once
    assert [c.envelope.job_id for c in rest] == [j.job_id for j in jobs[8900:]]
    counts = adapter.counts()
    assert (counts.processed, counts.busy, counts.enqueued) == (8900, 100, 0)


def test_retry_stores_the_new_envelope_in_the_retry_set(adapter):
    job = env()
    adapter.enqueue(job)
    [claim] = adapter.fetch(["default"], 1, 0, W)
    failed = job.copy(executions=1, exception_executions={"default": 1},
                      error={"class": "ValueError", "message": "boom", "traceback": "tb", "failed_at": 1.0})
    adapter.retry(claim, failed, adapter.clock() + 30)
    record = adapter.get(job.job_id)
    assert record.state == "retry" and record.envelope.error["message"] == "boom"
    assert record.envelope.executions == 1
    assert adapter.counts().retry == 1 and adapter.counts().failed == 1
    assert fetch_ids(adapter) == []
    adapter.clock.advance(31)
    adapter.promote_due()
    assert fetch_ids(adapter) == [job.job_id]


def test_reschedule_goes_to_the_scheduled_set_and_is_not_a_failure(adapter):
    job = env()
    adapter.enqueue(job)
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.reschedule(claim, job.copy(executions=1), adapter.clock() + 5)
    assert adapter.get(job.job_id).state == "scheduled"
    assert adapter.counts().failed == 0


def test_kill_moves_to_dead_and_retry_now_brings_it_back(adapter):
    job = env()
    adapter.enqueue(job)
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.kill(claim, job.copy(error={"class": "X", "message": "dead", "traceback": "", "failed_at": 1.0}))
    assert adapter.get(job.job_id).state == "dead"
    page = adapter.jobs("dead")
    assert page.total == 1 and page.items[0].envelope.error["message"] == "dead"
    assert adapter.counts().dead == 1 and adapter.counts().failed == 1
    assert adapter.retry_now([job.job_id]) == 1
    assert fetch_ids(adapter) == [job.job_id]


def test_kill_now_and_delete(adapter):
    a, b = env(run_at=adapter.clock() + 100), env(run_at=adapter.clock() + 100)
    adapter.enqueue_many([a, b])
    assert adapter.kill_now([a.job_id]) == 1
    assert adapter.get(a.job_id).state == "dead"
    assert adapter.delete([a.job_id, b.job_id, "missing"]) == 2
    assert adapter.counts().dead == 0 and adapter.counts().scheduled == 0


def test_dead_set_is_capped(adapter):
    with override_settings(DJJOBS={"DEAD_MAX_JOBS": 3}):
        adapter.options.pop("DEAD_MAX_JOBS", None)
        jobs = [env() for _ in range(5)]
        adapter.enqueue_many(jobs)
        for claim in adapter.fetch(["default"], 10, 0, W):
            adapter.clock.advance(1)
            adapter.kill(claim, claim.envelope)
        assert adapter.counts().dead == 3
        kept = {r.job_id for r in adapter.jobs("dead").items}
        assert kept == {j.job_id for j in jobs[2:]}


def test_release_hands_back_to_the_front_unchanged(adapter):
    first, second = env(), env()
    adapter.enqueue_many([first, second])
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.enqueue(third := env())
    adapter.release([claim])
    claims = adapter.fetch(["default"], 10, 0, W)
    assert [c.envelope.job_id for c in claims] == [first.job_id, second.job_id, third.job_id]
    assert claims[0].envelope == first


def test_release_of_a_batch_keeps_its_order_at_the_front(adapter):
    jobs = [env() for _ in range(4)]
    adapter.enqueue_many(jobs)
    claims = adapter.fetch(["default"], 3, 0, W)
    adapter.release(claims)
    assert fetch_ids(adapter, limit=10) == [j.job_id for j in jobs]


def test_expired_lease_is_recovered_to_the_front_with_counts(adapter):
    job, other = env(), env()
    adapter.enqueue_many([job, other])
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 1
    [again] = adapter.fetch(["default"], 1, 0, "worker-2")
    assert again.envelope.job_id == job.job_id
    assert (again.envelope.deaths, again.envelope.executions) == (1, 1)
    # the first worker's claim is stale: its ack must not remove the new run
    adapter.complete([claim])
    [next_one] = adapter.fetch(["default"], 1, 0, W, complete=[claim])  # nor its ack-with-fetch
    assert next_one.envelope.job_id == other.job_id
    assert adapter.get(job.job_id).state == "running"
    adapter.complete([again])
    assert adapter.get(job.job_id) is None


def test_heartbeat_extends_leases_and_registers_the_worker(adapter):
    adapter.enqueue(job := env())
    claims = adapter.fetch(["default"], 1, 0, W)
    info = WorkerInfo(W, "host", 123, ["default"], 10, adapter.clock(),
                      busy=[{"job_id": job.job_id, "job": job.job, "queue": "default", "started_at": adapter.clock()}])
    for _ in range(3):
        adapter.clock.advance(adapter.setting("LEASE_SECONDS") * 0.6)
        adapter.heartbeat(info, claims)
        assert adapter.recover_expired() == 0
    [worker] = adapter.workers()
    assert (worker.worker_id, worker.pid, worker.busy[0]["job_id"]) == (W, 123, job.job_id)
    adapter.unregister(W)
    assert adapter.workers() == []


def test_a_worker_silent_for_two_leases_is_not_listed(adapter):
    """A worker killed with all the others leaves its entry, which no live worker's poller
    removes: after two leases without a heartbeat it is no longer listed."""
    adapter.heartbeat(WorkerInfo(W, "host", 123, ["default"], 10, adapter.clock()), [])
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") * 2 - 1)
    assert [w.worker_id for w in adapter.workers()] == [W]
    adapter.clock.advance(2)
    assert adapter.workers() == []


def test_a_job_that_kills_its_worker_repeatedly_goes_dead(adapter):
    """...and ``job_failed`` is sent, as for any job that fails for good (alerts and
    django.tasks results hear of it)."""
    from djjobs import signals
    failed = []

    def receiver(sender, job=None, envelope=None, exception=None, **kwargs):
        failed.append((envelope.job_id, type(exception).__name__))

    signals.job_failed.connect(receiver)
    try:
        adapter.enqueue(job := env())
        lease = adapter.setting("LEASE_SECONDS")
        for _ in range(adapter.setting("MAX_WORKER_DEATHS")):
            assert fetch_ids(adapter, limit=1) == [job.job_id]
            adapter.clock.advance(lease + 1)
            adapter.recover_expired()
    finally:
        signals.job_failed.disconnect(receiver)
    record = adapter.get(job.job_id)
    assert record.state == "dead"
    assert "poison" in record.envelope.error["message"]
    assert failed == [(job.job_id, "WorkerDied")]


def test_pause_and_resume(adapter):
    adapter.enqueue(job := env())
    adapter.pause("default")
    assert fetch_ids(adapter) == []
    assert [q.paused for q in adapter.queues() if q.name == "default"] == [True]
    adapter.resume("default")
    assert fetch_ids(adapter) == [job.job_id]


def test_queues_report_size_and_latency_and_clear_empties(adapter):
    adapter.enqueue(env(queue="low"))
    adapter.clock.advance(10)
    adapter.enqueue(env(queue="low"))
    [low] = [q for q in adapter.queues() if q.name == "low"]
    assert low.size == 2 and 9 <= low.latency <= 11
    assert adapter.clear("low") == 2
    assert fetch_ids(adapter, ["low"]) == []


def test_claim_tick_is_true_once(adapter):
    assert adapter.claim_tick("daily", 1000.0) is True
    assert adapter.claim_tick("daily", 1000.0) is False
    assert adapter.claim_tick("daily", 1060.0) is True
    assert adapter.claim_tick("hourly", 1000.0) is True


def test_oversized_payload_is_refused(adapter):
    adapter.options["MAX_PAYLOAD_BYTES"] = 1000
    with pytest.raises(EnqueueError, match="over the 1,000-byte limit"):
        adapter.enqueue(env(args=["x" * 2000]))
    with pytest.raises(EnqueueError, match="over the 1,000-byte limit"):  # a bulk is refused whole
        adapter.enqueue_many([env(), env(args=["x" * 2000]), env()])
    assert adapter.counts().enqueued == 0


def test_undecodable_payload_is_claimed_without_an_envelope(adapter):
    adapter.enqueue_raw(b"\x00not json", "default")
    [claim] = adapter.fetch(["default"], 1, 0, W)
    assert claim.envelope is None and claim.raw == b"\x00not json"
    adapter.kill(claim, None)
    assert adapter.counts().dead == 1


def test_jobs_paginates_filters_and_searches(adapter):
    jobs = [env(job="tests.jobs.EchoJob", run_at=adapter.clock() + 100 + i) for i in range(30)]
    jobs.append(env(job="tests.jobs.MailerJob", run_at=adapter.clock() + 500, args=["needle@example.com", "Zoë"]))
    adapter.enqueue_many(jobs)
    page = adapter.jobs("scheduled", page=2, per_page=10)
    assert page.total == 31 and [r.job_id for r in page.items] == [j.job_id for j in jobs[10:20]]
    assert adapter.jobs("scheduled", job="tests.jobs.MailerJob").total == 1
    assert adapter.jobs("scheduled", search="needle@").items[0].job_id == jobs[-1].job_id
    assert adapter.jobs("scheduled", search="NEEDLE@Example").items[0].job_id == jobs[-1].job_id  # ASCII case
    assert adapter.jobs("scheduled", search="needle@example.org").total == 0
    assert adapter.jobs("scheduled", search="zoë").total == 1  # non-ASCII letters match as they are
    assert adapter.jobs("scheduled", search=jobs[3].job_id).items[0].job_id == jobs[3].job_id
    assert adapter.jobs("scheduled", queue="low").total == 0


def test_cron_state_is_stored_per_entry(adapter):
    assert adapter.cron_states() == {}
    adapter.set_cron_state("daily", {"last_tick": 1000.0, "last_outcome": "enqueued", "last_job_id": "abc"})
    adapter.set_cron_state("hourly", {"last_tick": 2000.0, "last_outcome": "failed: X", "last_job_id": None})
    adapter.set_cron_state("daily", {"last_tick": 1060.0, "last_outcome": "enqueued", "last_job_id": "def"})
    states = adapter.cron_states()
    assert states["daily"] == {"last_tick": 1060.0, "last_outcome": "enqueued", "last_job_id": "def"}
    assert states["hourly"]["last_outcome"] == "failed: X"


def test_results_are_stored_and_expire(adapter):
    record = {"status": "SUCCESSFUL", "return_value": {"n": [1, 2]}, "errors": [], "text": "nul\x00 \U0001F600"}
    adapter.save_result("r1", record, ttl=60)
    assert adapter.load_result("r1") == record
    assert adapter.load_result("missing") is None
    adapter.save_result("r1", {**record, "status": "FAILED"}, ttl=60)
    assert adapter.load_result("r1")["status"] == "FAILED"
    adapter.clock.advance(61)
    assert adapter.load_result("r1") is None


def test_concurrent_fetchers_never_share_a_job(adapter):
    import threading
    adapter.clock = time.time
    n = 1500
    adapter.enqueue_many([env() for _ in range(n)])
    seen, errors = [], []
    lock = threading.Lock()

    def fetcher(worker):
        try:
            for _ in range(1000):
                claims = adapter.fetch(["default"], 7, 0, worker)
                if not claims:
                    return
                with lock:
                    seen.extend(c.envelope.job_id for c in claims)
                adapter.complete(claims)
        except Exception as exc:  # e.g. "database is locked"
            errors.append(exc)

    threads = [threading.Thread(target=fetcher, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(seen) == n and len(set(seen)) == n
    assert adapter.counts().processed == n


def deep_payload(depth=400, job="tests.jobs.EchoJob"):
    """A payload orjson reads (up to 1,024 levels) but cannot write back (254): what another
    program, or a djjobs before arguments were checked, may have stored."""
    return (b'{"job":"' + job.encode() + b'","args":[' + b"[" * depth + b"]" * depth + b'],"job_id":"deep-'
            + str(depth).encode() + b'"}')


def test_a_payload_that_cannot_be_re_encoded_never_stops_recovery(adapter):
    """Lease recovery re-encodes each orphan with one more death: a payload the encoder
    refuses goes to the dead set byte-exact with the reason beside it, and the other
    orphans are recovered in the same pass (before, the first one raised and none was)."""
    deep = deep_payload()
    adapter.enqueue_raw(deep, "default")
    adapter.enqueue_raw(b"\x00not json", "default")
    adapter.enqueue(job := env())
    claims = adapter.fetch(["default"], 3, 0, W)
    assert len(claims) == 3
    adapter.clock.advance(adapter.setting("LEASE_SECONDS") + 1)
    assert adapter.recover_expired() == 3
    dead = {r.raw: r for r in adapter.jobs("dead").items}
    assert set(dead) == {deep, b"\x00not json"}
    assert "cannot be stored again" in dead[deep].error["message"]
    assert "Recursion limit" in dead[deep].error["message"]
    assert "does not decode" in dead[b"\x00not json"].error["message"]
    assert adapter.get("deep-400").error == dead[deep].error
    [again] = adapter.fetch(["default"], 1, 0, W)
    assert (again.envelope.job_id, again.envelope.deaths) == (job.job_id, 1)
    assert adapter.counts().dead == 2


def test_kill_without_an_envelope_keeps_the_bytes_and_stores_the_error_beside_them(adapter):
    adapter.enqueue_raw(b"\x00not json", "default")
    [claim] = adapter.fetch(["default"], 1, 0, W)
    error = {"class": "djjobs.errors.PayloadError", "message": "Its payload does not decode: bad bytes",
             "traceback": "", "failed_at": adapter.clock()}
    adapter.kill(claim, None, error)
    [record] = adapter.jobs("dead").items
    assert record.raw == b"\x00not json"
    assert (record.error["class"], record.error["message"]) == (error["class"], error["message"])
    assert adapter.retry_now([record.job_id]) == 1  # back in its queue: the error no longer applies
    [claim] = adapter.fetch(["default"], 1, 0, W)
    adapter.kill(claim, None)
    assert adapter.jobs("dead").items[0].error is None


def test_only_the_running_claim_of_a_dead_worker_gets_a_death(adapter):
    """What a dead worker's supervisor does with its claims: the job it was running gets a
    death at once (no waiting for the lease), the one that finished is acknowledged, the
    prefetched one goes back to the front untouched, byte-exact. Each step is fenced:
    settling a claim already settled (or recovered) changes nothing."""
    running, finished, prefetched, other = env(), env(), env(), env()
    adapter.enqueue_many([running, finished, prefetched, other])
    a, b, c = adapter.fetch(["default"], 3, 0, W)
    processed = adapter.counts().processed
    adapter.complete([b])
    assert adapter.abandon([a], "pid 4242, killed by SIGSEGV") == 1
    adapter.release([c])
    assert adapter.counts().processed == processed + 1
    first, second, third = adapter.fetch(["default"], 3, 0, "worker-2")
    assert [x.envelope.job_id for x in (first, second, third)] == [prefetched.job_id, running.job_id, other.job_id] \
        or [x.envelope.job_id for x in (first, second)] == [running.job_id, prefetched.job_id]
    by_id = {x.envelope.job_id: x for x in (first, second, third)}
    assert by_id[prefetched.job_id].raw == prefetched.encode()  # untouched: no death, no execution
    dead_run = by_id[running.job_id].envelope
    assert (dead_run.deaths, dead_run.executions) == (1, 1)
    assert "SIGSEGV" in dead_run.error["message"] and dead_run.error["class"] == "djjobs.errors.WorkerDied"
    assert adapter.abandon([a, b, c], "again") == 0  # stale claims: nothing moves
    assert adapter.get(running.job_id).state == "running"


def test_abandon_sends_a_poison_pill_to_the_dead_set(adapter):
    adapter.enqueue(job := env())
    for _ in range(adapter.setting("MAX_WORKER_DEATHS")):
        [claim] = adapter.fetch(["default"], 1, 0, W)
        assert adapter.abandon([claim], "pid 1, killed by SIGKILL") == 1
    record = adapter.get(job.job_id)
    assert record.state == "dead" and "poison" in record.envelope.error["message"]


def test_ids_and_names_no_job_can_have_match_nothing_instead_of_raising(adapter):
    """A NUL cannot be in a PostgreSQL text value (it raised DataError, and the admin's
    pages answered 500): such an id, queue or class name finds nothing, on every adapter."""
    adapter.enqueue(job := env())
    odd = "a\x00b"
    assert adapter.get(odd) is None
    assert adapter.retry_now([odd]) == adapter.kill_now([odd]) == adapter.delete([odd]) == 0
    assert adapter.jobs("ready", queue=odd).total == adapter.jobs("ready", job=odd).total == 0
    assert adapter.jobs("ready", search=odd).total == 0
    assert adapter.clear(odd) == 0
    assert adapter.get(job.job_id).state == "ready"
