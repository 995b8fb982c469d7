"""Continuations on runjobs with real processes (Redis, SQLite, PostgreSQL): a job interrupted by
SIGTERM resumes without repeating a finished step or a checkpointed item; one whose worker is
SIGKILLed resumes, through lease recovery, at its last durably saved checkpoint."""
import collections
import os
import signal
import time

import pytest

from djjobs.adapters import use_adapter
from tests.fixtures.worker import ONE_BACKEND, wait_for
from tests.worker_jobs import StepsJob

N, PAUSE = 60, 0.05


def lines(trace):
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


def items(trace):
    """{token: [item indexes in the order processed]}"""
    done = collections.defaultdict(list)
    for f in lines(trace):
        if f[0] == "item":
            done[f[1]].append(int(f[2]))
    return done


def events(trace, kind):
    return collections.Counter(f[1] for f in lines(trace) if f[0] == kind)


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_sigterm_interrupts_continuations_which_resume_without_repeating_work(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    worker = start_worker("-p", "2", "-c", "2")
    with use_adapter(backend.adapter):
        jobs = [StepsJob.perform_later(str(trace), f"j{i}", N, PAUSE) for i in range(4)]
    tokens = [f"j{i}" for i in range(4)]
    wait_for(lambda: all(len(items(trace)[t]) >= 5 for t in tokens), 60, "all four jobs to be in their items step")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    stopped = items(trace)
    assert all(len(stopped[t]) < N for t in tokens), "the jobs finished before the stop: nothing was tested"
    for job in jobs:  # stored again, ready, with their progress: not a failure, not an attempt
        record = backend.adapter.get(job.job_id)
        assert record.state == "ready", record.state
        progress = record.envelope.meta["progress"]
        assert progress["completed"] == ["first"] and progress["resumptions"] == 1, progress
        assert progress["current"] == ["items", len(stopped[f"j{jobs.index(job)}"])]
        assert (record.envelope.executions, record.envelope.deaths) == (0, 0)
    counts = backend.adapter.counts()
    assert (counts.failed, counts.retry, counts.busy, counts.enqueued) == (0, 0, 0, 4)
    start_worker("-p", "2", "-c", "2")
    wait_for(lambda: all(events(trace, "last")[t] == 1 for t in tokens), 90, "the four jobs to finish")
    time.sleep(0.5)
    done = items(trace)
    for t in tokens:
        assert sorted(done[t]) == list(range(N)), f"{t}: an item ran twice or never: {done[t]}"
    assert events(trace, "first") == {t: 1 for t in tokens}
    assert events(trace, "begin") == {t: 2 for t in tokens}
    assert {f[3] for f in lines(trace) if f[0] == "begin"} == {"1"}  # the attempt number stayed 1
    assert backend.adapter.counts().failed == 0


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_sigkilled_worker_resumes_at_the_last_saved_checkpoint(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    worker = start_worker("-p", "2", "-c", "2")
    with use_adapter(backend.adapter):
        jobs = [StepsJob.perform_later(str(trace), f"k{i}", N, PAUSE) for i in range(2)]
    tokens = ["k0", "k1"]
    wait_for(lambda: all(len(items(trace)[t]) >= 15 for t in tokens), 60, "both jobs to be well into their items")
    for pid in [*worker.children(), worker.proc.pid]:  # the supervisor and its workers: nobody settles the claims
        os.kill(pid, signal.SIGKILL)
    worker.wait(10)
    time.sleep(0.2)
    killed = items(trace)
    saved = {}
    for job, t in zip(jobs, tokens):
        record = backend.adapter.get(job.job_id)
        assert record.state == "running"
        progress = record.envelope.meta["progress"]
        assert progress["completed"] == ["first"] and progress["current"][0] == "items"
        saved[t] = progress["current"][1]
        # saved at most every 0.2 s: within a few items of where the run had got to
        assert len(killed[t]) - 6 <= saved[t] <= len(killed[t]) < N
    start_worker("-p", "2", "-c", "2")  # its poller recovers the expired leases
    wait_for(lambda: all(events(trace, "last")[t] == 1 for t in tokens), 90, "both jobs to finish")
    time.sleep(0.5)
    done = items(trace)
    for t in tokens:
        counted = collections.Counter(done[t])
        assert set(counted) == set(range(N)), f"{t}: an item never ran"
        again = sorted(i for i, n in counted.items() if n > 1)
        assert all(n <= 2 for n in counted.values())
        assert all(i >= saved[t] for i in again), f"{t}: items before the saved cursor {saved[t]} ran again: {again}"
        assert again == list(range(saved[t], len(killed[t]))), (t, saved[t], again)
    assert events(trace, "first") == {t: 1 for t in tokens}
    # the resumed run is the second execution (lease recovery counts the death)
    assert sorted(f[3] for f in lines(trace) if f[0] == "begin") == ["1", "1", "2", "2"]


@ONE_BACKEND
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_cancelled_continuation_stops_at_its_next_checkpoint(backend, start_worker, tmp_path):
    import djjobs
    trace = tmp_path / "trace"
    start_worker("-c", "2")
    with use_adapter(backend.adapter):
        job = StepsJob.perform_later(str(trace), "c0", 400, PAUSE)
        wait_for(lambda: len(items(trace)["c0"]) >= 3, 60, "the job to be in its items step")
        assert djjobs.cancel(job.job_id) == "cancelling"
    wait_for(lambda: (r := backend.adapter.get(job.job_id)) is not None and r.state == "cancelled", 30,
             "the job to end cancelled")
    done = items(trace)["c0"]
    assert len(done) < 100 and events(trace, "last")["c0"] == 0  # stopped within about a second
    progress = backend.adapter.get(job.job_id).envelope.meta["progress"]
    assert progress["completed"] == ["first"] and progress["current"] == ["items", len(done)]
    assert backend.adapter.counts().failed == 0


@ONE_BACKEND
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_quiet_worker_hands_its_continuation_to_another(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    quiet = start_worker("-c", "2")
    with use_adapter(backend.adapter):
        job = StepsJob.perform_later(str(trace), "q0", N, PAUSE)
    wait_for(lambda: len(items(trace)["q0"]) >= 5, 60, "the job to be in its items step")
    quiet.signal(signal.SIGTSTP)
    wait_for(lambda: (r := backend.adapter.get(job.job_id)) is not None and r.state == "ready", 30,
             "the job to be handed back")
    assert quiet.proc.poll() is None  # still running, quiet
    assert backend.adapter.get(job.job_id).envelope.meta["progress"]["resumptions"] == 1
    start_worker("-c", "2")
    wait_for(lambda: events(trace, "last")["q0"] == 1, 60, "the job to finish on the other worker")
    assert sorted(items(trace)["q0"]) == list(range(N)) and events(trace, "first")["q0"] == 1
