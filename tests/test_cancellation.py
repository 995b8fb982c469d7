"""Cancellation (djjobs/cancellation.py): the API, the test adapter, and cancelling queued and
running jobs on runjobs with real processes (Redis, SQLite, PostgreSQL)."""
import time

import pytest

import djjobs
from djjobs import Job, JobCancelled, signals
from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.worker.processor import CANCEL_CHECK_SECONDS, CancelProbe
from tests.fixtures.worker import wait_for
from tests.worker_jobs import CooperativeJob, RecordJob, StubbornJob


class CountingJob(Job):
    runs = []

    def perform(self, n):
        CountingJob.runs.append(n)


class GivesUpJob(Job):
    def perform(self):
        raise JobCancelled()


def test_cancel_takes_a_job_id():
    with pytest.raises(TypeError, match="job id"):
        djjobs.cancel(CountingJob(1))
    with pytest.raises(TypeError, match="job ids"):
        djjobs.cancel_many(["a", 3])


def test_a_cancelled_job_is_not_drained_and_the_signal_is_sent(enqueued_jobs):
    CountingJob.runs.clear()
    heard = []

    def receiver(sender, job_id, envelope, **kwargs):
        heard.append((sender, job_id, envelope.job_id))
    signals.job_cancelled.connect(receiver)
    try:
        keep, drop = CountingJob.perform_later(1), CountingJob.perform_later(2)
        assert djjobs.cancel(drop.job_id) == "cancelled"
        assert djjobs.cancel(drop.job_id) is None
        assert djjobs.cancel("unknown") is None
    finally:
        signals.job_cancelled.disconnect(receiver)
    assert heard == [(CountingJob, drop.job_id, drop.job_id)]
    assert enqueued_jobs.drain() == 1
    assert CountingJob.runs == [1]
    assert enqueued_jobs.get(drop.job_id).state == "cancelled" and enqueued_jobs.get(keep.job_id) is None


def test_a_job_that_raises_job_cancelled_is_neither_failed_nor_retried(enqueued_jobs):
    assert GivesUpJob.perform_now() is None
    assert enqueued_jobs.enqueued == []
    assert Job.cancelled.__get__(GivesUpJob()) is False  # outside a worker: never cancelled


def test_the_inline_adapter_has_nothing_to_cancel(settings):
    settings.DJJOBS = {"ADAPTER": "inline"}
    assert djjobs.cancel("any") is None


def test_the_probe_asks_storage_at_most_once_a_second_and_stays_true():
    adapter = MemoryAdapter()
    asked = []
    adapter.cancel_requested = lambda job_id: asked.append(job_id) or len(asked) >= 2
    probe = CancelProbe(adapter, "j1")
    assert probe() is False and probe() is False and asked == ["j1"]
    probe.asked_at -= CANCEL_CHECK_SECONDS
    assert probe() is True and probe() is True and len(asked) == 2


def test_the_probe_reads_an_unreachable_storage_as_not_cancelled(caplog):
    adapter = MemoryAdapter()

    def down(job_id):
        raise ConnectionError("down")
    adapter.cancel_requested = down
    assert CancelProbe(adapter, "j1")() is False
    assert "Could not check whether job j1 was cancelled" in caplog.text


def lines(trace):
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_cancelled_queued_and_scheduled_jobs_never_run(backend, start_worker, tmp_path):
    """40 ready and 10 scheduled jobs; half of each cancelled before runjobs -p 2 starts: only
    the others run, once each, and the cancelled ones stay cancelled."""
    trace = tmp_path / "trace"
    with use_adapter(backend.adapter):
        ready = [RecordJob.perform_later(str(trace), f"r{i}") for i in range(40)]
        later = [RecordJob.set(wait=1).perform_later(str(trace), f"s{i}") for i in range(10)]
        drop = ready[::2] + later[::2]
        done = djjobs.cancel_many([j.job_id for j in drop])
    assert set(done.values()) == {"cancelled"} and len(done) == 25
    start_worker("-p", "2", "-c", "5")
    wait_for(lambda: sum(f[0] == "ran" for f in lines(trace)) >= 25, 60, "the 25 jobs left")
    time.sleep(1.5)  # any cancelled job that were to run would have by now
    ran = sorted(f[1] for f in lines(trace) if f[0] == "ran")
    assert ran == sorted(j.arguments[1] for j in ready[1::2] + later[1::2])
    assert {backend.adapter.get(j.job_id).state for j in drop} == {"cancelled"}
    assert backend.adapter.counts().cancelled == 25


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_running_job_sees_the_request_and_ends_cancelled(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    start_worker("-c", "2")
    with use_adapter(backend.adapter):
        job = CooperativeJob.perform_later(str(trace), "coop")
        wait_for(lambda: any(f[0] == "tick" for f in lines(trace)), 60, "the job to start")
        assert djjobs.cancel(job.job_id) == "cancelling"
    wait_for(lambda: (r := backend.adapter.get(job.job_id)) is not None and r.state == "cancelled", 30,
             "the job to end cancelled")
    events = lines(trace)
    assert [f[0] for f in events if f[0] != "tick"] == ["start", "stopped"]
    ticks = sum(f[0] == "tick" for f in events)
    assert ticks < 400  # it stopped early: the request reached it within about a second
    record = backend.adapter.get(job.job_id)
    assert record.envelope.executions == 1
    counts = backend.adapter.counts()
    assert (counts.failed, counts.retry, counts.busy) == (0, 0, 0)


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_running_job_that_fails_after_a_request_is_cancelled_not_retried(backend, start_worker, tmp_path):
    trace, flag = tmp_path / "trace", tmp_path / "flag"
    start_worker("-c", "2")
    with use_adapter(backend.adapter):
        job = StubbornJob.perform_later(str(trace), "stubborn", str(flag))
        wait_for(lambda: lines(trace), 60, "the job to start")
        assert djjobs.cancel(job.job_id) == "cancelling"
    flag.write_text("go")
    wait_for(lambda: (r := backend.adapter.get(job.job_id)) is not None and r.state == "cancelled", 30,
             "the job to end cancelled")
    time.sleep(0.5)
    assert [f[0] for f in lines(trace)] == ["start"]
    assert backend.adapter.counts().retry == 0
