"""Concurrency limits through the public API and with real worker processes (the adapter
contract is in tests/conformance/test_concurrency.py)."""
import collections
import os
import signal
import time

import pytest

from djjobs import Job, registry
from djjobs.adapters import use_adapter
from djjobs.checks import check_job_classes
from djjobs.concurrency import slot_of
from tests.fixtures.worker import wait_for
from tests.jobs import record
from tests.worker_jobs import LimitedRecordJob, SoloRecordJob


class ChargeJob(Job):
    concurrency_limit = 2

    def concurrency_key(self, account, amount):
        return f"account:{account}"

    def perform(self, account, amount):
        record("charge", account, amount)


class DefaultKeyJob(Job):
    concurrency_limit = 1

    def perform(self, n):
        record("n", n)


def test_the_declaration_travels_in_the_envelope(enqueued_jobs):
    ChargeJob.perform_later(7, 10)
    DefaultKeyJob.perform_later(1)
    assert slot_of(enqueued_jobs.enqueued[0].meta) == ("account:7", 2)
    assert slot_of(enqueued_jobs.enqueued[1].meta) == ("tests.test_concurrency_limits.DefaultKeyJob", 1)


def test_blocked_jobs_wait_and_the_test_adapter_drains_them_all(enqueued_jobs):
    for n in range(3):
        DefaultKeyJob.perform_later(n)
    assert enqueued_jobs.counts().blocked == 2
    assert enqueued_jobs.drain() == 3  # each outcome admits the next


def test_bad_declarations_are_refused(enqueued_jobs):
    class Bad(Job):
        job_name = "tests.BadConcurrency"
        concurrency_limit = 0

        def perform(self):
            pass

    class BadKey(Job):
        job_name = "tests.BadConcurrencyKey"
        concurrency_limit = 1

        def concurrency_key(self):
            return 5

        def perform(self):
            pass
    try:
        errors = [e.msg for e in check_job_classes() if e.id == "djjobs.E020"]
        assert any("Bad.concurrency_limit must be a positive int" in m for m in errors)
        with pytest.raises(ValueError, match="concurrency_limit"):
            Bad.perform_later()
        with pytest.raises(TypeError, match=r"concurrency_key\(\) must return a non-empty str or None, got 5"):
            BadKey.perform_later()
    finally:
        registry._jobs.pop("tests.BadConcurrency")
        registry._jobs.pop("tests.BadConcurrencyKey")


def max_overlap(events):
    """The most jobs running at once, from (time, +1 start / -1 end) events (an end at the
    same instant as a start counts first)."""
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_two_at_once_per_key_across_two_processes(backend, start_worker, tmp_path):
    """200 jobs in two keys on runjobs -p 2 -c 10: never more than 2 of a key running (from
    their recorded start and end times), all 200 ran once, and each key's jobs started in
    enqueue order (two admitted together may start in either order)."""
    trace = tmp_path / "trace"
    jobs = [LimitedRecordJob(str(trace), group, f"{group}{i:03d}", 0.01) for i in range(100) for group in "ab"]
    with use_adapter(backend.adapter):
        from djjobs import perform_all_later
        perform_all_later(jobs)
    assert backend.adapter.counts().blocked == 196
    start_worker("-p", "2", "-c", "10")
    wait_for(lambda: trace.exists() and trace.read_text().count("end ") >= 200, 120, "200 jobs", interval=0.2)
    lines = [line.split() for line in trace.read_text().splitlines()]
    ran = collections.Counter(f[2] for f in lines if f[0] == "start")
    assert sorted(ran) == sorted(j.arguments[2] for j in jobs) and set(ran.values()) == {1}
    for group in "ab":
        events = [(float(f[3]), 1 if f[0] == "start" else -1) for f in lines if f[1] == group]
        assert max_overlap(events) == 2
        order = [f[2] for f in sorted((f for f in lines if f[1] == group and f[0] == "start"), key=lambda f: float(f[3]))]
        assert all(abs(order.index(f"{group}{i:03d}") - i) <= 1 for i in range(100)), order
    wait_for(lambda: backend.adapter.counts().blocked == 0 and not backend.adapter.concurrency_uses(), 10,
             "every slot let go")


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_sigkilled_holder_keeps_its_slot_until_recovery_and_then_hands_it_on(backend, start_worker, tmp_path):
    """Limit 1. The holder's worker dies with its supervisor (nothing settles its claim): the
    next job stays blocked while the dead worker's lease runs out, lease recovery queues the
    holder again with its slot, it runs again (quickly: it sleeps on its first run only), and
    only that outcome admits the next job."""
    trace = tmp_path / "trace"
    with use_adapter(backend.adapter):
        SoloRecordJob.perform_later(str(trace), "solo", "holder", 60)
        first = start_worker("-c", "2")
        wait_for(lambda: trace.exists() and "start solo holder" in trace.read_text(), 60, "the holder to start")
        follower = SoloRecordJob.perform_later(str(trace), "solo", "next", 0)
    assert backend.adapter.get(follower.job_id).state == "blocked"
    for pid in [first.proc.pid, *first.children()]:  # the supervisor first: nothing settles the claim
        os.kill(pid, signal.SIGKILL)
    first.proc.wait(10)
    assert backend.adapter.get(follower.job_id).state == "blocked"  # the dead holder still holds the slot
    start_worker("-c", "2")
    wait_for(lambda: "end solo next" in trace.read_text(), 60, "the follower to run after the holder's re-run")
    events = [f[0] + " " + f[2] for f in (line.split() for line in trace.read_text().splitlines())]
    assert events == ["start holder", "start holder", "end holder", "start next", "end next"]
