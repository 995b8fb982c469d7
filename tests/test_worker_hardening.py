"""Worker hardening: a failed run's objects are freed when its outcome is reported;
claims that arrive with their lease (nearly) over are handed back unrun; a worker
whose supervisor was SIGKILLed renews its own leases until its jobs end."""
import gc
import os
import signal
import socket
import threading
import time
import weakref

import pytest

from djjobs import Job, discard_on, retry_on
from djjobs.envelope import Envelope
from djjobs.worker.queues import QueueOrder, parse
from tests.fixtures.worker import Backend, FAST, Worker, wait_for

HELD: list = []  # weak references to what the jobs below allocated


class Hoard:
    """Stands for a large object a job loads: only the job's locals refer to it."""


class FailsHolding(Job):
    retry_attempts = 1  # dead at once

    def perform(self):
        hoard = Hoard()
        HELD.append(weakref.ref(hoard))
        raise ValueError("failed while holding a large object")


@retry_on(ValueError, wait=60, attempts=3)
class RetriesHolding(FailsHolding):
    pass


@discard_on(ValueError)
class DiscardedHolding(FailsHolding):
    pass


class ChainedHolding(FailsHolding):
    def perform(self):
        try:
            super().perform()
        except ValueError:
            raise RuntimeError("failed handling the first failure")


class TimesOutHolding(Job):
    timeout = 0.2
    retry_attempts = 1

    def perform(self):
        hoard = Hoard()
        HELD.append(weakref.ref(hoard))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # pure Python: JobTimeout lands here
            pass


def _worker(adapter, **kwargs):
    from djjobs.worker.process import WorkerProcess
    return WorkerProcess(QueueOrder(parse(["default"])), 2, shutdown_timeout=5,
                         poll_interval=kwargs.pop("poll_interval", 0.05), adapter=adapter, **kwargs)


def _run_worker_until(worker, done, what, timeout=10.0):
    """Run ``worker`` (its real fetch loop, job threads and poller) in a thread until ``done()``."""
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        wait_for(done, timeout, what)
    finally:
        worker.stopping.set()
        thread.join(15)
    assert not thread.is_alive()


@pytest.fixture
def no_gc():
    """Only reference counting frees anything meanwhile: what the cyclic GC would free
    at some later collection (never, for all a worker's next job can tell) stays."""
    HELD.clear()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        HELD.clear()


@pytest.mark.parametrize("job, state", [(FailsHolding, "dead"), (RetriesHolding, "retry"),
                                        (DiscardedHolding, None), (ChainedHolding, "dead"),
                                        (TimesOutHolding, "dead")])
def test_a_failed_runs_objects_are_freed_once_its_outcome_is_reported(memory_adapter, no_gc, job, state):
    env = job().to_envelope()
    memory_adapter.enqueue(env)
    worker = _worker(memory_adapter)

    def reported():
        record = memory_adapter.get(env.job_id)
        return (record is None) if state is None else (record is not None and record.state == state)

    _run_worker_until(worker, lambda: HELD and reported(), f"{job.__name__} to be reported")
    time.sleep(0.05)  # the job thread's finally (release, then free) follows the report
    assert [ref() for ref in HELD] == [None], f"{job.__name__}: the run's locals outlived its reported outcome"


def test_the_processor_frees_a_failed_runs_objects_too(memory_adapter, no_gc):
    """The processor every in-process runner shares (the async adapter's threads)."""
    from djjobs.worker.processor import process
    memory_adapter.enqueue(FailsHolding().to_envelope())
    [claim] = memory_adapter.fetch(["default"], 1, 0, "w")
    outcome = process(memory_adapter, claim)
    assert outcome.kind == "dead" and outcome.envelope.error["class"] == "builtins.ValueError"
    assert [ref() for ref in HELD] == [None]


def _lines(path, kind):
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.split()[0] == kind]


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_gives_back_the_memory_of_a_failed_job(redis_backend, tmp_path):
    import psutil
    from tests.worker_jobs import AllocatesAndFails
    trace = tmp_path / "trace"
    worker = Worker(redis_backend, tmp_path / "worker.log", ["-c", "1"])
    try:
        [child] = wait_for(worker.children, 30, "the worker process to start")
        wait_for(lambda: redis_backend.adapter.workers(), 30, "the worker to register")
        before = psutil.Process(child).memory_info().rss
        env = Envelope(job=AllocatesAndFails.job_name, args=[str(trace), "big", 200])
        redis_backend.adapter.enqueue(env)
        [[_, _, pid, loaded]] = wait_for(lambda: _lines(trace, "loaded"), 30, "the job to load its data")
        assert int(pid) == child and int(loaded) > before + 150 * 2**20
        wait_for(lambda: (r := redis_backend.adapter.get(env.job_id)) is not None and r.state == "dead", 30,
                 "the job to be reported dead")
        rss = wait_for(lambda: (m := psutil.Process(child).memory_info().rss) < before + 50 * 2**20 and m, 5,
                       "the worker's memory to drop back", interval=0.1)
        assert rss < before + 50 * 2**20
    finally:
        worker.stop()


class Quick(Job):
    def perform(self, blob):
        pass


def test_an_idle_worker_holds_no_claim_of_its_last_job(memory_adapter):
    """Neither a job thread waiting for its next job nor an idle fetch loop keeps the last
    job's claim (and payload, up to MAX_PAYLOAD_BYTES) alive."""
    fetched = []
    fetch = memory_adapter.fetch

    def recording_fetch(*args, **kwargs):
        claims = fetch(*args, **kwargs)
        fetched.extend(weakref.ref(c) for c in claims)
        return claims

    memory_adapter.fetch = recording_fetch
    memory_adapter.enqueue(Quick("x" * 1000).to_envelope())
    worker = _worker(memory_adapter)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: memory_adapter.counts().processed == 1, 10, "the job to be acknowledged")
        gc.collect()
        wait_for(lambda: [r() for r in fetched] == [None], 2, "the claim to be freed")
    finally:
        worker.stopping.set()
        thread.join(15)
