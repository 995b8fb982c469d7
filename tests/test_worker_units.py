"""Worker pieces that need no process: queue order, argument parsing, prefetch, hand-back, connections."""
import collections
import io
import random
import threading
import time

import orjson
import pytest

from djjobs import Job
from djjobs.worker.queues import QueueOrder, parse


def test_strict_order_without_weights():
    order = QueueOrder(parse(["critical", "default", "low"]))
    assert [order.next() for _ in range(3)] == [["critical", "default", "low"]] * 3


def test_weighted_order_follows_the_weights_and_starves_none():
    order = QueueOrder(parse(["critical,6", "default,3", "low,1"]), rng=random.Random(3))
    firsts = collections.Counter(order.next()[0] for _ in range(10_000))
    assert firsts["critical"] / firsts["default"] == pytest.approx(2, rel=0.15)
    assert firsts["default"] / firsts["low"] == pytest.approx(3, rel=0.25)
    assert all(sorted(order.next()) == ["critical", "default", "low"] for _ in range(100))


@pytest.mark.parametrize("specs, message", [
    (["bad queue"], "Malformed queue name"),
    (["q,0"], "whole number >= 1"),
    (["q,x"], "whole number >= 1"),
    (["q,"], "whole number >= 1"),
    (["q,\u00b2"], "whole number >= 1"),  # a digit to str.isdigit, not to int()
    ([], "At least one queue"),
])
def test_bad_queue_specs(specs, message):
    with pytest.raises(ValueError, match=message):
        parse(specs)


def _worker(adapter, concurrency=4, prefetch_seconds=0.05):
    from djjobs.worker.process import WorkerProcess
    return WorkerProcess(QueueOrder(parse(["default"])), concurrency, shutdown_timeout=1, poll_interval=1,
                         adapter=adapter, prefetch_seconds=prefetch_seconds)


def test_prefetch_follows_the_recent_finish_rate_and_is_capped(memory_adapter):
    now = [1000.0]
    worker = _worker(memory_adapter)
    worker._now = lambda: now[0]
    assert worker._capacity() == 4  # nothing finished yet: one claim per thread
    worker._busy = 7
    for _ in range(7):
        worker._finish(None, 0.001)
    worker._collect_finished()
    assert (worker._busy, worker._capacity()) == (0, 4 + 7)
    worker._busy = 30
    for _ in range(30):
        worker._finish(None, 0.001)
    worker._collect_finished()
    assert worker._capacity() == 4 + 16  # at most 4 x concurrency ahead
    now[0] += 0.051
    assert worker._capacity() == 4  # the finishes left the window: long jobs are not claimed ahead
    worker._busy = 10
    for _ in range(10):  # many finishing at once, but each took a second: still no prefetch
        worker._finish(None, 1.0)
    worker._collect_finished()
    assert worker._recent == 10 and worker._capacity() == 4
    off = _worker(memory_adapter, prefetch_seconds=0)
    off._busy = 4
    for _ in range(4):
        off._finish(None, 0.001)
    off._collect_finished()
    assert off._capacity() == 4 and not off._finishes  # nothing recorded: nothing to prune


def test_the_fetch_loop_is_woken_once_per_batch_not_once_per_job(memory_adapter):
    worker = _worker(memory_adapter)
    worker._busy = 5
    worker._wake_at = 3  # as armed by a wait for three finished jobs
    worker._finish(None, 0.001)
    worker._finish(None, 0.001)
    assert worker._wake.locked() and worker._wake_at == 3  # two finishes: the loop sleeps on
    worker._finish(None, 0.001)
    assert not worker._wake.locked() and worker._wake_at == 0  # the third wakes it, once
    worker._finish(None, 0.001)
    assert not worker._wake.locked()
    worker._collect_finished(timeout=30, want=2)  # enough already finished: no wait
    assert worker._busy == 1 and worker._wake_at == 0


def test_shutdown_hands_back_prefetched_jobs_at_once(memory_adapter):
    from djjobs.envelope import Envelope
    jobs = [Envelope("tests.Nothing") for _ in range(3)]
    memory_adapter.enqueue_many(jobs)
    worker = _worker(memory_adapter)
    claims = memory_adapter.fetch(["default"], 3, 0, worker.worker_id)
    worker.claims.update((c.key, c) for c in claims)
    worker._busy = 3
    for claim in claims:  # claimed ahead, not started: no job thread is running
        worker._ready.put(claim)
    assert worker._shutdown() == 0
    assert memory_adapter.counts().enqueued == 3 and memory_adapter.counts().busy == 0
    assert [c.envelope.job_id for c in memory_adapter.fetch(["default"], 3, 0, "w")] == [j.job_id for j in jobs]


def test_the_supervisor_hears_of_claims_that_outlive_the_tell_interval_only(memory_adapter):
    from djjobs.envelope import Envelope
    memory_adapter.enqueue_many([Envelope("tests.Nothing") for _ in range(3)])
    worker = _worker(memory_adapter)
    worker.pipe = io.BytesIO()
    quick, slow, late = memory_adapter.fetch(["default"], 3, 0, worker.worker_id)

    def told():
        lines = worker.pipe.getvalue().splitlines()
        worker.pipe.seek(0)
        worker.pipe.truncate()
        return [(sorted(c["key"] for c in m["claims"]), sorted(m["done"])) for m in map(orjson.loads, lines)]

    assert worker._tell_every == min(0.5, memory_adapter.setting("LEASE_SECONDS") / 8)
    worker._told_at = time.monotonic()
    worker._sync([quick, slow], [])
    worker._tell()
    assert told() == []  # told less than _tell_every ago: wait
    worker._sync([], [quick])  # finished before anyone was told: never told at all
    worker._told_at -= worker._tell_every
    worker._tell()
    assert told() == [([slow.key], [])]
    worker._sync([late], [slow])
    worker._tell(force=True)  # shutdown does not wait
    assert told() == [([late.key], [slow.key])]
    worker._tell(force=True)
    assert told() == []  # nothing new, nothing sent

class QueryJob(Job):
    """Opens a database connection in the job thread (tests only)."""
    def perform(self):
        from django.db import connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


@pytest.mark.django_db(transaction=True)
def test_a_job_thread_that_used_the_database_closes_its_connection_after_each_job(memory_adapter):
    """CONN_MAX_AGE = 0 (the test settings): as after a request, the connection a job opened
    is closed when it ends (the check is skipped only in threads that never connected)."""
    from django.db import connections
    assert connections["default"].settings_dict["CONN_MAX_AGE"] == 0
    worker = _worker(memory_adapter)
    memory_adapter.enqueue(QueryJob().to_envelope())
    claim = memory_adapter.fetch(["default"], 1, 0, worker.worker_id)[0]
    seen = {}

    def run():
        outcome = worker._execute(claim)
        seen["kind"] = outcome.kind
        seen["open"] = connections["default"].connection is not None

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert seen == {"kind": "succeeded", "open": False}


def test_a_timeout_is_never_raised_into_a_thread_whose_job_already_stopped():
    """The watchdog decides under its lock, so a job that finishes between the watchdog's
    look at the deadlines and its raise gets no JobTimeout in whatever its thread does next."""
    from djjobs.errors import JobTimeout
    from djjobs.worker.timeouts import Watchdog

    started, done, hit = threading.Event(), threading.Event(), []
    holder = {}

    class StopsAfterLook(dict):  # the job stops right after check() has listed the deadlines
        def items(self):
            listed = list(super().items())
            super().pop(holder["ident"], None)
            return listed

    watchdog = Watchdog(on_stuck=lambda: hit.append("stuck"))
    watchdog._running = StopsAfterLook()

    def job_thread():
        holder["ident"] = threading.get_ident()
        watchdog.start(0.001, "SomeJob")
        started.set()
        try:
            for _ in range(2000):  # the thread's later work, in Python bytecode
                if done.is_set():
                    break
                time.sleep(0.001)
        except JobTimeout:
            hit.append("JobTimeout")

    thread = threading.Thread(target=job_thread)
    thread.start()
    started.wait(5)
    time.sleep(0.01)  # past the deadline
    watchdog.check()
    time.sleep(0.05)  # a raised exception would land within the next bytecodes
    done.set()
    thread.join(5)
    assert hit == [] and not watchdog._running


def test_a_crash_loop_delays_restarts_without_blocking_the_supervisor(memory_adapter, monkeypatch):
    """The supervisor renews every worker's leases from its main loop: a crash-looping
    worker slows its own restarts down, but the loop never sleeps for it."""
    import os
    import subprocess
    import sys
    from djjobs.worker import supervisor as module
    supervisor = module.Supervisor(memory_adapter, [], processes=1, queues=["default"], concurrency=1,
                                   shutdown_timeout=1)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: pytest.fail(f"the supervisor slept {seconds} s"))
    spawned = []
    monkeypatch.setattr(supervisor, "_spawn", spawned.append)
    supervisor.restarts = [time.monotonic()] * 10
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    supervisor.children[0] = child = module.Child(0, proc, read_fd)
    supervisor.selector.register(read_fd, module.selectors.EVENT_READ, child)
    supervisor._check_children()
    assert spawned == [] and supervisor.respawn_at[0] > time.monotonic() + 1
    supervisor.respawn_at[0] = time.monotonic()
    supervisor._check_children()
    assert spawned == [0] and supervisor.respawn_at == {}


def test_worker_processes_get_the_pythonpath_option():
    from djjobs.worker.supervisor import child_argv
    argv = child_argv({"queue": ["default"], "concurrency": 2, "shutdown_timeout": 5, "verbosity": 1,
                       "pythonpath": "src", "traceback": True})
    assert argv[argv.index("--pythonpath") + 1].endswith("/src") and "--traceback" in argv


@pytest.mark.parametrize("options, message", [
    ({"concurrency": 0}, "at least 1"),
    ({"shutdown_timeout": float("nan")}, "--shutdown-timeout"),
    ({"shutdown_timeout": -1.0}, "--shutdown-timeout"),
])
def test_bad_runjobs_options_are_command_errors(options, message):
    from django.core.management import CommandError, call_command
    with pytest.raises(CommandError, match=message):
        call_command("runjobs", **options)


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("no text")


class RaisesUnprintable(Job):
    retry_attempts = 1

    def perform(self):
        raise UnprintableError


def _bad_wait(executions, exc):
    return None


class BadWaitJob(Job):
    def perform(self):
        raise ValueError("boom")


BadWaitJob = __import__("djjobs").retry_on(ValueError, wait=_bad_wait)(BadWaitJob)


@pytest.mark.parametrize("job", [RaisesUnprintable, BadWaitJob])
def test_a_failure_whose_handling_raises_still_has_an_outcome(job):
    """An exception whose str() fails, or a retry ``wait`` callable that returns nonsense,
    must not escape ``execute`` (the worker would leave the job to its lease, and count a
    worker death each time): the job goes to the dead set, saying what happened."""
    from djjobs.envelope import Envelope
    from djjobs.execution import DEAD, execute
    outcome = execute(Envelope(job=job.job_name))
    assert outcome.kind == DEAD and outcome.envelope.error["message"]


def test_sys_exit_in_a_worker_thread_is_a_failure_and_propagates_elsewhere():
    from djjobs.envelope import Envelope
    from djjobs.execution import DEAD, execute
    from tests.worker_jobs import ExitJob
    env = Envelope(job=ExitJob.job_name, args=["/dev/null", "t"])
    assert execute(env, contain_exits=True).kind == DEAD
    with pytest.raises(SystemExit):
        execute(env)
