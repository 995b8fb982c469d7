"""Async jobs (``async def perform``) on real `runjobs` processes, on every durable adapter:
many awaits overlap on one process' event loop, a stop lets them finish or hands them back,
a killed process' jobs are recovered, a timeout cancels, a blocking coroutine is reported."""
import signal
import time

import pytest

from djjobs.envelope import Envelope
from tests.async_worker_jobs import AsyncBlockingJob, AsyncFlakyJob, AsyncSleepJob, AsyncTimeoutJob
from tests.fixtures.worker import ONE_BACKEND, wait_for
from tests.worker_jobs import RecordJob

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True, databases="__all__")]


def push_many(backend, job_cls, rows):
    envs = [Envelope(job=job_cls.job_name, args=list(args)) for args in rows]
    backend.adapter.enqueue_many(envs)
    return envs


def lines(path, kind=None):
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [r for r in rows if kind is None or r[0] == kind]


def most_at_once(trace) -> int:
    """The most runs in flight at once, from the start and ran times."""
    rows = [r for r in lines(trace) if len(r) == 5]  # the async jobs' lines (with a time)
    events = sorted((float(r[4]), 1 if r[0] == "start" else -1) for r in rows)
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def test_500_async_jobs_overlap_on_one_process_with_two_threads(backend, start_worker, tmp_path):
    """Each awaits 0.2 s: 100 s one after the other, 50 s on two threads; the loop overlaps them."""
    trace = tmp_path / "trace"
    push_many(backend, AsyncSleepJob, [(str(trace), f"a{i}", 0.2) for i in range(500)])
    push_many(backend, RecordJob, [(str(trace), f"s{i}") for i in range(20)])  # sync jobs beside them
    started = time.monotonic()
    worker = start_worker("-p", "1", "-c", "2")
    wait_for(lambda: len(lines(trace, "ran")) == 520, 60, "520 jobs to run")
    took = time.monotonic() - started
    ran = lines(trace, "ran")
    assert sorted(r[1] for r in ran if r[1].startswith("a")) == sorted(f"a{i}" for i in range(500))
    assert took < 15, f"500 async jobs of 0.2 s took {took:.1f} s"
    assert most_at_once(trace) >= 50, most_at_once(trace)  # (the default async concurrency: 100)
    wait_for(lambda: backend.adapter.counts().processed == 520, 10, "every job to be acknowledged")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    counts = backend.adapter.counts()
    assert (counts.enqueued, counts.busy) == (0, 0)


@ONE_BACKEND
def test_sigterm_lets_awaits_finish_and_hands_back_the_ones_past_the_shutdown_timeout(backend, start_worker,
                                                                                     tmp_path):
    """Short awaits finish during the graceful stop; long ones are cancelled at the shutdown
    timeout and go back to their queue unchanged (no death); a new worker runs each once."""
    trace = tmp_path / "trace"
    push_many(backend, AsyncSleepJob, [(str(trace), f"short{i}", 0.5) for i in range(20)])
    push_many(backend, AsyncSleepJob, [(str(trace), f"long{i}", 3.0) for i in range(20)])
    worker = start_worker("-c", "2", "--shutdown-timeout", "1.5")
    wait_for(lambda: len(lines(trace, "start")) == 40, 30, "the 40 jobs to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    ran = [r[1] for r in lines(trace, "ran")]
    assert sorted(ran) == sorted(f"short{i}" for i in range(20)), worker.output()
    counts = backend.adapter.counts()
    assert (counts.enqueued, counts.busy, counts.processed, counts.dead) == (20, 0, 20, 0)
    assert "releasing 20 unfinished job(s)" in worker.output()
    again = start_worker("-c", "2")
    wait_for(lambda: len(lines(trace, "ran")) == 40, 30, "the handed-back jobs to run")
    long_runs = [r for r in lines(trace, "ran") if r[1].startswith("long")]
    assert sorted(r[1] for r in long_runs) == sorted(f"long{i}" for i in range(20))
    assert {r[3] for r in long_runs} == {"1"}  # handed back unchanged: not an attempt, not a death
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0, again.output()


def test_a_killed_worker_process_async_jobs_are_recovered(backend, start_worker, tmp_path):
    """SIGKILL mid-await: the supervisor settles the dead process' running async claims from
    its claim log (a death each) and its new process runs every one again, once."""
    trace = tmp_path / "trace"
    push_many(backend, AsyncSleepJob, [(str(trace), f"k{i}", 1.5) for i in range(30)])
    worker = start_worker("-c", "2")
    wait_for(lambda: len(lines(trace, "start")) == 30, 30, "the 30 jobs to start")
    [child] = worker.children()
    import os
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: len(lines(trace, "ran")) == 30, 40, "the 30 jobs to run again")
    ran = lines(trace, "ran")
    assert sorted(r[1] for r in ran) == sorted(f"k{i}" for i in range(30))
    assert {r[2] for r in ran} != {str(child)} and {r[3] for r in ran} == {"2"}, worker.output()
    wait_for(lambda: backend.adapter.counts().processed == 30, 10, "the 30 jobs to be acknowledged")
    assert backend.adapter.counts().dead == 0


@ONE_BACKEND
def test_async_timeouts_retries_and_a_blocking_coroutine(backend, start_worker, tmp_path):
    """A timeout cancels the task and the job fails with JobTimeout; a failure is retried by
    its retry_on; a coroutine that calls time.sleep is reported with its class."""
    trace = tmp_path / "trace"
    [timed] = push_many(backend, AsyncTimeoutJob, [(str(trace), "t")])
    push_many(backend, AsyncFlakyJob, [(str(trace), "f")])
    push_many(backend, AsyncBlockingJob, [(str(trace), "b", 0.8)])
    push_many(backend, AsyncSleepJob, [(str(trace), f"n{i}", 0.1) for i in range(5)])
    worker = start_worker("-c", "2")
    wait_for(lambda: lines(trace, "cancelled"), 30, "the timed-out job to be cancelled")
    wait_for(lambda: backend.adapter.counts().dead == 1, 10, "the timed-out job to be dead")
    record = backend.adapter.get(timed.job_id)
    assert record.envelope.error["class"] == "djjobs.errors.JobTimeout", record.envelope.error
    assert "exceeded its timeout of 0.5 s" in record.envelope.error["message"]
    wait_for(lambda: {r[1] for r in lines(trace, "ran")} >= {"f", "b", *(f"n{i}" for i in range(5))}, 30,
             "the other jobs to run")
    assert [r[3] for r in lines(trace, "ran") if r[1] == "f"] == ["2"]
    wait_for(lambda: "runs again after a stall" in worker.output(), 10, "the stall to be reported")
    out = worker.output()
    assert "WARNING The event loop of this worker process has been blocked" in out
    assert "tests.async_worker_jobs.AsyncBlockingJob" in out.split("has been blocked")[1].split("\n")[0], out
    assert "JobTimeout" in out
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()


def test_an_async_django_task_runs_on_the_loop_and_stores_its_result(backend, start_worker):
    """Its result record is written off the loop (the database adapter would refuse it on the loop)."""
    from django.tasks import TaskResultStatus

    from djjobs.adapters import use_adapter
    from tests import tasks
    with use_adapter(backend.adapter):
        result = tasks.async_double.enqueue(21)
        worker = start_worker("-c", "1")

        def done():
            result.refresh()
            return result.status == TaskResultStatus.SUCCESSFUL
        wait_for(done, 30, "the async task to succeed")
    assert result.return_value == 42
    assert "SynchronousOnlyOperation" not in worker.output()
