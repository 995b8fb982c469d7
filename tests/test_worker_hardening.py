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


RUNS: list = []


class Counted(Job):
    def perform(self, token):
        RUNS.append(token)


def test_claims_that_arrive_after_their_lease_are_handed_back_unrun(caplog):
    """A fetch answered after the lease ended (a network freeze): lease recovery has handed
    the jobs to another worker meanwhile. The late claims are not run; each job runs once."""
    from djjobs.adapters.memory import MemoryAdapter
    adapter = MemoryAdapter({"LEASE_SECONDS": 1})
    RUNS.clear()
    adapter.enqueue_many([Counted(f"j{i}").to_envelope() for i in range(5)])
    fetch, late = adapter.fetch, []

    def frozen_fetch(*args, **kwargs):
        claims = fetch(*args, **kwargs)
        if claims and not late:
            late.extend(claims)
            time.sleep(1.1)  # the answer is held up past the lease...
            assert adapter.recover_expired() == len(claims)  # ...and another worker's poller recovers them
        return claims

    adapter.fetch = frozen_fetch
    worker = _worker(adapter, poll_interval=30)  # this worker's own poller stays out of it
    with caplog.at_level("WARNING", logger="djjobs"):
        _run_worker_until(worker, lambda: len(RUNS) >= 5 and adapter.counts().processed == 5, "5 jobs")
    time.sleep(0.1)
    assert sorted(RUNS) == [f"j{i}" for i in range(5)]
    assert f"{len(late)} job(s) reached this worker 1.1 s after they were claimed" in caplog.text
    adapter.close()


def test_claims_that_arrive_with_little_lease_left_go_back_to_the_front(caplog):
    """Not recovered yet: the late claims go back to the front of their queue, in order,
    and run from a fresh claim."""
    from djjobs.adapters.memory import MemoryAdapter
    adapter = MemoryAdapter({"LEASE_SECONDS": 1})
    RUNS.clear()
    adapter.enqueue_many([Counted(f"j{i}").to_envelope() for i in range(3)])
    fetch, late = adapter.fetch, []

    def slow_fetch(*args, **kwargs):
        claims = fetch(*args, **kwargs)
        if claims and not late:
            late.extend(claims)
            time.sleep(0.6)  # over half the lease gone: too little left to be renewed in time
        return claims

    adapter.fetch = slow_fetch
    worker = _worker(adapter, poll_interval=30)
    worker.concurrency = 1
    with caplog.at_level("WARNING", logger="djjobs"):
        _run_worker_until(worker, lambda: adapter.counts().processed == 3, "3 jobs")
    assert RUNS == ["j0", "j1", "j2"]
    assert adapter.counts().failed == 0 and "handing them back unrun" in caplog.text
    adapter.close()


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server. ``freeze(seconds)`` holds back
    everything the server sends (the requests still arrive and run): a network freeze
    between a worker and its storage, as seen by the worker. Bounded: every wait has a
    timeout, and ``close`` ends every thread's socket."""

    def __init__(self, port: int):
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thawed_at = 0.0
        self.sockets: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self, seconds: float) -> None:
        self.thawed_at = time.monotonic() + seconds

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            server.settimeout(None)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, freezes: bool) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                while freezes and not self.closed.is_set() and time.monotonic() < self.thawed_at:
                    time.sleep(0.01)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_frozen_connection_does_not_run_jobs_another_worker_recovered(redis_server, tmp_path):
    """Worker A reaches Redis through a proxy that freezes for 6 s (three leases) just as
    20 jobs are handed to it. Lease recovery rightly gives them to worker B (a direct
    connection), which runs them; when A's connection thaws, A must not run them too."""
    import uuid
    from tests.worker_jobs import RecordJob
    proxy = FreezableProxy(redis_server.port)
    prefix = f"w{uuid.uuid4().hex[:8]}"
    settings = {"ADAPTER": "redis", "REDIS_PREFIX": prefix, **FAST}
    through_proxy = Backend("redis", {**settings, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"})
    direct = Backend("redis", {**settings, "REDIS_URL": redis_server.url})
    trace = tmp_path / "trace"
    workers = []
    try:
        workers.append(a := Worker(through_proxy, tmp_path / "a.log", ["-c", "20"]))
        wait_for(lambda: direct.adapter.workers(), 30, "worker A to register")
        time.sleep(1.0)  # A waits idle, registered for hand-offs
        proxy.freeze(6.0)
        for i in range(20):  # one by one: each enqueue hands one job to the idle fetcher
            direct.adapter.enqueue(Envelope(job=RecordJob.job_name, args=[str(trace), f"j{i}"]))
        assert direct.adapter.counts().busy == 20, "the jobs were not handed to worker A"
        workers.append(Worker(direct, tmp_path / "b.log", ["-c", "20"]))
        wait_for(lambda: len(_lines(trace, "ran")) >= 20, 30, "worker B to run the recovered jobs")
        wait_for(lambda: "handing them back unrun" in a.output() or len(_lines(trace, "ran")) > 20, 30,
                 "worker A to receive the late hand-offs")
        time.sleep(1.0)  # anything A would still run
        ran = sorted(r[1] for r in _lines(trace, "ran"))
        assert ran == sorted(f"j{i}" for i in range(20)), (ran, a.output()[-3000:])
    finally:
        for worker in workers:
            worker.stop()
        proxy.close()


@pytest.mark.timeout(60)
def test_hand_offs_under_a_short_lease_arrive_with_most_of_it_left(redis_url, caplog):
    """A job handed to an idle fetcher is leased from the fetcher's last registration
    refresh; refreshed every eighth of the lease, a 2-s lease still has 3/4 left, so no
    hand-off is mistaken for a late one."""
    import uuid
    from djjobs.adapters.redis import RedisAdapter
    adapter = RedisAdapter({"REDIS_URL": redis_url, "REDIS_PREFIX": f"h{uuid.uuid4().hex[:8]}", "LEASE_SECONDS": 2})
    RUNS.clear()
    worker = _worker(adapter, poll_interval=30)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with caplog.at_level("WARNING", logger="djjobs"):
            for i in range(12):  # spread over the registration's life, while the worker idles
                time.sleep(0.17)
                adapter.enqueue(Counted(f"h{i}").to_envelope())
            wait_for(lambda: len(RUNS) == 12, 10, "12 jobs to run")
        assert "handing them back unrun" not in caplog.text
        assert adapter.counts().processed == 12 or wait_for(lambda: adapter.counts().processed == 12, 5, "acks")
    finally:
        worker.stopping.set()
        thread.join(15)
        adapter.close()


@pytest.fixture(params=["redis", "database-sqlite"])
def orphan_backend(request) -> Backend:
    return request.getfixturevalue(request.param.replace("-", "_") + "_backend")


def _kill_if_alive(pid: int) -> None:
    """A worker process this test started, if it still runs (its PID not reused since)."""
    import psutil
    try:
        if psutil_alive(pid) and "runjobs" in " ".join(psutil.Process(pid).cmdline()):
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_an_orphaned_worker_renews_its_own_leases_until_its_jobs_end(orphan_backend, tmp_path):
    """The supervisor (only its PID) is SIGKILLed while its worker runs 10 jobs of 5 s
    under a 2-s lease; another worker watches the same storage. The orphan's POLL_INTERVAL
    is 5 s: it must notice without waiting for its poller. The orphan finishes them
    and renews their leases itself meanwhile: none is recovered and run a second time."""
    from tests.worker_jobs import RecordJob
    backend = orphan_backend
    trace = tmp_path / "trace"
    for i in range(10):
        backend.adapter.enqueue(Envelope(job=RecordJob.job_name, args=[str(trace), f"o{i}", 5.0]))
    # The orphan's poller would notice only after several leases: detection must not wait for it.
    a = Worker(Backend(backend.name, {**backend.djjobs, "POLL_INTERVAL": 5}, backend.databases),
               tmp_path / "a.log", ["-c", "10"])
    children: list[int] = []
    workers = [a]
    try:
        wait_for(lambda: len(_lines(trace, "start")) == 10, 30, "10 jobs to start")
        children = a.children()
        workers.append(b := Worker(backend, tmp_path / "b.log", ["-c", "10"]))
        wait_for(lambda: len(backend.adapter.workers()) == 2, 30, "the second worker to register")
        os.kill(a.proc.pid, signal.SIGKILL)  # the supervisor only: its worker process lives on
        a.proc.wait(10)
        wait_for(lambda: len(_lines(trace, "ran")) >= 10, 30, "the orphan to finish its jobs")
        for pid in children:
            wait_for(lambda: not psutil_alive(pid), 15, "the orphan to exit")
        time.sleep(1.0)  # past another lease: anything recovered would have started by now
        starts = sorted(r[1] for r in _lines(trace, "start"))
        assert starts == sorted(f"o{i}" for i in range(10)), (starts, a.output()[-2000:], b.output()[-2000:])
        assert {r[2] for r in _lines(trace, "ran")} == {str(pid) for pid in children}
        assert "Lost the supervisor" in a.output()
        assert [w.pid for w in backend.adapter.workers()] == b.children()  # the orphan unregistered itself
    finally:
        for worker in workers:
            worker.stop()
        for pid in children:
            _kill_if_alive(pid)


def psutil_alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


STARTED, GATE = threading.Event(), threading.Event()


class Gated(Job):
    def perform(self):
        STARTED.set()
        GATE.wait(10)


def test_a_job_claimed_just_before_a_stop_is_told_to_the_supervisor_while_it_finishes(memory_adapter):
    """A claim not told to the supervisor yet when the stop begins is told during the
    graceful stop (within the tell interval), so its lease is renewed while it finishes."""
    import io
    import orjson
    STARTED.clear()
    GATE.clear()
    memory_adapter.enqueue(Gated().to_envelope())
    worker = _worker(memory_adapter, poll_interval=30)
    worker.pipe = io.BytesIO()
    worker._told_at = time.monotonic()  # a tell just happened: the next one waits _tell_every
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert STARTED.wait(5)
        worker.stopping.set()
        time.sleep(worker._tell_every + 0.3)
        messages = [orjson.loads(line) for line in worker.pipe.getvalue().splitlines()]
        told = [c["key"] for m in messages if m["event"] == "sync" for c in m["claims"]]
        assert len(told) == 1, messages
    finally:
        GATE.set()
        thread.join(15)


@pytest.mark.parametrize("lease, warned", [(1, True), (1.5, True), (2, False), (60, False)])
def test_a_lease_too_short_to_renew_with_a_margin_is_a_warning(settings, lease, warned):
    from djjobs.checks import check_settings
    settings.DJJOBS = {"ADAPTER": "memory", "LEASE_SECONDS": lease}
    ids = [m.id for m in check_settings()]
    assert ("djjobs.W003" in ids) == warned, ids
