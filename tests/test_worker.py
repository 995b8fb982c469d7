"""`runjobs` as real processes on every durable adapter: crash recovery (SIGKILL),
graceful and quiet stops, lease renewal under a GIL-bound job, timeouts, poison
payloads, and no double execution across processes."""
import collections
import os
import signal
import time

import pytest

from djjobs.envelope import Envelope
from tests.fixtures.worker import wait_for
from tests.worker_jobs import BusyJob, ExitJob, RecordJob, StuckJob

pytestmark = [pytest.mark.timeout(180), pytest.mark.django_db(transaction=True, databases="__all__")]


def push(backend, job_cls, *args, **options):
    env = Envelope(job=job_cls.job_name, args=list(args), **options)
    backend.adapter.enqueue(env)
    return env


def lines(path, kind=None):
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [r for r in rows if kind is None or r[0] == kind]


def test_a_worker_registers_at_start_not_after_a_heartbeat_period(backend, start_worker):
    """With the default 60 s lease the supervisor heartbeats every 15 s; a new worker is
    registered at once, so the admin and jobs_status list it from the start."""
    backend.djjobs = {**backend.djjobs, "LEASE_SECONDS": 60}
    worker = start_worker("-c", "2")
    wait_for(lambda: backend.adapter.workers(), 10, "the worker to register")
    assert [w.pid for w in backend.adapter.workers()] == worker.children()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()


def test_worker_drains_and_unregisters_on_sigterm(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    for i in range(50):
        push(backend, RecordJob, str(trace), f"j{i}")
    worker = start_worker("-c", "5")
    wait_for(lambda: len(lines(trace, "ran")) == 50, 30, "50 jobs to run")
    wait_for(lambda: backend.adapter.workers(), 10, "the worker to register")
    [info] = backend.adapter.workers()
    assert info.concurrency == 5 and info.pid in worker.children()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert sorted(r[1] for r in lines(trace, "ran")) == sorted(f"j{i}" for i in range(50))
    assert backend.adapter.workers() == []
    counts = backend.adapter.counts()
    assert (counts.enqueued, counts.busy, counts.processed) == (0, 0, 50)
    assert "adapter" in worker.output()


def test_sigkilled_worker_job_runs_again_after_the_lease(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    env = push(backend, RecordJob, str(trace), "victim", 3.0)
    worker = start_worker("-c", "2")
    wait_for(lambda: lines(trace, "start"), 30, "the job to start")
    [child] = worker.children()
    import os
    os.kill(child, signal.SIGKILL)
    # the supervisor starts a new worker process; the lease (2 s) expires and the job runs again
    ran = wait_for(lambda: lines(trace, "ran"), 40, "the job to run again after the lease")
    assert ran[0][1] == "victim" and ran[0][3] == "2", (ran, worker.output())
    assert int(ran[0][2]) != child
    wait_for(lambda: backend.adapter.get(env.job_id) is None, 10, "the job to be acknowledged")
    assert len(lines(trace, "start")) == 2


def test_sigterm_lets_a_running_job_finish(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    push(backend, RecordJob, str(trace), "slow", 1.5)
    worker = start_worker("-c", "2", "--shutdown-timeout", "20")
    wait_for(lambda: lines(trace, "start"), 30, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0
    assert [r[1] for r in lines(trace, "ran")] == ["slow"]
    assert backend.adapter.counts().enqueued == 0


def test_sigterm_past_the_timeout_hands_the_job_back(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    env = push(backend, RecordJob, str(trace), "too-slow", 20)
    worker = start_worker("-c", "2", "--shutdown-timeout", "1")
    wait_for(lambda: lines(trace, "start"), 30, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0, worker.output()
    record = backend.adapter.get(env.job_id)
    assert record is not None and record.state == "ready", record
    assert record.envelope.executions == 0  # handed back unchanged
    assert lines(trace, "ran") == []


def test_quiet_worker_stops_fetching(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    worker = start_worker("-c", "2")
    push(backend, RecordJob, str(trace), "before")
    wait_for(lambda: lines(trace, "ran"), 30, "the first job")
    worker.signal(signal.SIGTSTP)
    time.sleep(1.5)
    push(backend, RecordJob, str(trace), "after")
    time.sleep(2.5)
    assert [r[1] for r in lines(trace, "ran")] == ["before"]
    assert backend.adapter.counts().enqueued == 1


def test_lease_is_renewed_while_a_job_holds_the_interpreter(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    lease = backend.djjobs["LEASE_SECONDS"]
    push(backend, BusyJob, str(trace), "busy", lease * 3)
    start_worker("-c", "2")
    wait_for(lambda: lines(trace, "ran"), lease * 3 + 30, "the busy job to finish")
    time.sleep(lease)
    assert len(lines(trace, "start")) == 1, "the job was recovered while running: its lease was not renewed"
    assert backend.adapter.counts().processed == 1


def test_poison_payloads_go_dead_and_the_worker_keeps_running(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    backend.adapter.enqueue_raw(b"{not json", "default")
    backend.adapter.enqueue(Envelope(job="os.system", args=["echo pwned"]))
    start_worker("-c", "2")
    push(backend, RecordJob, str(trace), "after-poison")
    wait_for(lambda: lines(trace, "ran"), 30, "a normal job after the poison ones")
    dead = wait_for(lambda: backend.adapter.jobs("dead").items if backend.adapter.counts().dead == 2 else None,
                    10, "two dead jobs")
    errors = sorted(r.envelope.error["class"] for r in dead if r.envelope)
    assert errors == ["djjobs.errors.UnknownJobError"]
    assert any(r.envelope is None for r in dead)


def test_a_job_past_its_timeout_is_stopped(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    env = push(backend, StuckJob, str(trace), "stuck")
    start_worker("-c", "2")
    wait_for(lambda: backend.adapter.counts().dead == 1, 30, "the stuck job to be stopped")
    record = backend.adapter.get(env.job_id)
    assert record.envelope.error["class"] == "djjobs.errors.JobTimeout"
    assert lines(trace, "ran") == []


def test_two_processes_never_run_a_job_twice(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    n = 3000
    backend.adapter.enqueue_many([Envelope(job=RecordJob.job_name, args=[str(trace), f"j{i}"]) for i in range(n)])
    worker = start_worker("-p", "2", "-c", "8")
    wait_for(lambda: len(lines(trace, "ran")) >= n, 120, f"{n} jobs", interval=0.2)
    time.sleep(0.5)
    ran = lines(trace, "ran")
    counts = collections.Counter(r[1] for r in ran)
    assert len(counts) == n and max(counts.values()) == 1, [t for t, c in counts.items() if c > 1][:10]
    assert len({r[2] for r in ran}) == 2, "both worker processes should have run jobs"
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0
    assert "database is locked" not in worker.output() and "ERROR" not in worker.output()


def test_jobs_trickled_to_idle_processes_run_once_each(backend, start_worker, tmp_path):
    """Idle workers, jobs one at a time: on Redis an enqueue hands each job to a waiting
    fetcher (no claim); on the database adapter NOTIFY or polling wakes one. Either way
    every job runs exactly once."""
    trace = tmp_path / "trace"
    worker = start_worker("-p", "2", "-c", "4")
    push(backend, RecordJob, str(trace), "warm-up")
    wait_for(lambda: lines(trace, "ran"), 30, "the first job")
    time.sleep(1.0)  # both processes idle and registered
    redis_stats = backend.adapter.client.info if backend.adapter.name == "redis" else None
    lpops = redis_stats("commandstats").get("cmdstat_lpop", {}).get("calls", 0) if redis_stats else 0
    n = 300
    for i in range(n):
        push(backend, RecordJob, str(trace), f"t{i}")
        time.sleep(0.005)
    wait_for(lambda: len(lines(trace, "ran")) >= n + 1, 90, f"{n} jobs", interval=0.1)
    time.sleep(0.5)
    ran = lines(trace, "ran")
    counts = collections.Counter(r[1] for r in ran)
    assert len(counts) == n + 1 and max(counts.values()) == 1, [t for t, c in counts.items() if c > 1][:10]
    assert len({r[2] for r in ran}) == 2, "both worker processes should have run jobs"
    if redis_stats:  # claims pop queue lists; handed jobs never enter one
        claimed = redis_stats("commandstats").get("cmdstat_lpop", {}).get("calls", 0) - lpops
        assert claimed < n // 2, f"{claimed} of {n} trickled jobs were claimed from the queue, not handed off"
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0
    assert "ERROR" not in worker.output()
    assert backend.adapter.counts().busy == 0 and backend.adapter.counts().enqueued == 0


def test_a_busy_worker_takes_no_jobs_it_has_no_thread_for(backend, start_worker, tmp_path):
    """A worker whose threads are all busy leaves new jobs in their queue for any other
    worker. On Redis a fetch that waited while the worker could still prefetch (a job had
    just finished) stays registered for hand-offs after one arrives; the worker must end
    that registration once it has no free thread, or later enqueues are handed to it and
    wait behind its running job (past their lease: recovered and run twice)."""
    trace = tmp_path / "trace"
    start_worker("-c", "1")
    push(backend, RecordJob, str(trace), "quick")
    wait_for(lambda: lines(trace, "ran"), 30, "the first job")
    time.sleep(0.2)  # the worker waits in a fetch sized with the prefetch of a job just finished
    push(backend, RecordJob, str(trace), "long", 3.0)
    wait_for(lambda: lines(trace, "start"), 10, "the long job to start")
    time.sleep(0.5)
    late = push(backend, RecordJob, str(trace), "late")
    time.sleep(0.2)
    assert backend.adapter.get(late.job_id).state == "ready", "a job was given to a worker with no free thread"
    wait_for(lambda: len(lines(trace, "ran")) == 3, 30, "the long and late jobs")
    assert [r[1] for r in lines(trace, "ran")] == ["quick", "long", "late"]


# Supervisor and signal behaviour does not depend on the adapter: one backend is enough.
ONE_BACKEND = pytest.mark.parametrize("backend", ["database-sqlite"], indirect=True)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@ONE_BACKEND
def test_a_job_calling_sys_exit_fails_and_its_thread_goes_on(backend, start_worker, tmp_path):
    """SystemExit from a job is its failure, not the end of its thread (which would leave
    the worker claiming jobs for a thread that is gone, and count a worker death)."""
    trace = tmp_path / "trace"
    exiting = push(backend, ExitJob, str(trace), "exit")
    push(backend, RecordJob, str(trace), "after")
    start_worker("-c", "1")
    wait_for(lambda: lines(trace, "ran"), 30, "the job after the exiting one")
    record = backend.adapter.get(exiting.job_id)
    assert record.state == "dead" and record.envelope.error["class"] == "builtins.SystemExit"
    assert record.envelope.deaths == 0


@ONE_BACKEND
def test_a_worker_whose_supervisor_was_killed_stops(backend, start_worker, tmp_path):
    """Nobody renews an orphan's leases: it stops (gracefully) instead of claiming jobs."""
    worker = start_worker("-c", "2")
    wait_for(lambda: worker.children(), 30, "the worker process")
    [child] = worker.children()
    wait_for(lambda: backend.adapter.workers(), 30, "the worker to register")
    try:
        worker.signal(signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not alive(child), 20, "the orphaned worker process to stop")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


@ONE_BACKEND
def test_a_repeated_sigterm_still_stops_gracefully(backend, start_worker, tmp_path):
    """systemd's default KillMode sends SIGTERM to every process of the unit: a worker gets
    it directly and again from the supervisor. Only a second SIGINT stops it at once."""
    trace = tmp_path / "trace"
    worker = start_worker("-c", "1")
    push(backend, RecordJob, str(trace), "slow", 2.0)
    wait_for(lambda: lines(trace, "start"), 30, "the job to start")
    [child] = worker.children()
    os.kill(child, signal.SIGTERM)
    time.sleep(0.2)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert [r[1] for r in lines(trace, "ran")] == ["slow"]
    assert "exiting now" not in worker.output()


@ONE_BACKEND
def test_a_quiet_worker_restarted_after_a_crash_stays_quiet(backend, start_worker, tmp_path):
    trace = tmp_path / "trace"
    worker = start_worker("-c", "1")
    wait_for(lambda: backend.adapter.workers(), 30, "the worker to register")
    [first] = worker.children()
    worker.signal(signal.SIGTSTP)
    wait_for(lambda: "Quiet" in worker.output(), 10, "the worker to go quiet")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: worker.output().count("Quiet") >= 2, 30, "the restarted worker to be quiet")
    push(backend, RecordJob, str(trace), "while-quiet")
    time.sleep(1.5)
    assert lines(trace, "ran") == []
