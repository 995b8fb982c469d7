"""Servers really restarted under running workers: nothing that the server kept is lost.
Redis runs with AOF (appendfsync always) and is SIGKILLed; PostgreSQL is restarted."""
import collections
import signal
import time

import pytest

from djjobs.adapters.redis import RedisAdapter
from djjobs.envelope import Envelope
from tests.fixtures.redis import RedisServer, require_redis
from tests.fixtures.worker import Backend, Worker, _databases, wait_for
from tests.worker_jobs import RecordJob

pytestmark = [pytest.mark.timeout(240), pytest.mark.django_db(transaction=True, databases="__all__")]
FAST = {"LEASE_SECONDS": 2, "POLL_INTERVAL": 0.2}


def ran_tokens(path):
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split()[1] for line in path.read_text().splitlines() if line.startswith("ran "))


@pytest.fixture
def aof_redis():
    require_redis()
    server = RedisServer(aof=True).start()
    yield server
    server.cleanup()


def test_redis_killed_and_restarted_keeps_every_job(aof_redis, tmp_path):
    adapter = RedisAdapter({"REDIS_URL": aof_redis.url, **FAST})
    adapter.enqueue(scheduled := Envelope(job=RecordJob.job_name, args=["x", "sched"], run_at=time.time() + 3600))
    aof_redis.proc.send_signal(signal.SIGKILL)
    aof_redis.proc.wait(10)
    aof_redis.start()
    assert adapter.get(scheduled.job_id).state == "scheduled"


def test_redis_restart_mid_drain_loses_nothing(aof_redis, tmp_path):
    trace = tmp_path / "trace"
    n = 1500
    backend = Backend("redis", {"ADAPTER": "redis", "REDIS_URL": aof_redis.url, "REDIS_PREFIX": "r", **FAST})
    backend.adapter.enqueue_many([Envelope(job=RecordJob.job_name, args=[str(trace), f"j{i}"]) for i in range(n)])
    worker = Worker(backend, tmp_path / "worker.log", ["-c", "4"])
    try:
        wait_for(lambda: len(ran_tokens(trace)) > 100, 60, "the drain to start")
        aof_redis.proc.send_signal(signal.SIGKILL)
        aof_redis.proc.wait(10)
        time.sleep(1.0)
        aof_redis.start()
        wait_for(lambda: len(ran_tokens(trace)) == n, 120, f"all {n} jobs after the restart", interval=0.2)
        wait_for(lambda: backend.adapter.counts().enqueued + backend.adapter.counts().busy == 0, 30, "an empty queue")
    finally:
        worker.stop()
    assert "Fetch failed" in worker.output()  # it did see the outage, and recovered by itself
    assert set(ran_tokens(trace)) == {f"j{i}" for i in range(n)}


def test_postgres_restart_mid_drain_loses_nothing(tmp_path):
    from tests.fixtures.database import require_postgres
    from tests.pg_plugin import server
    require_postgres()
    from django.db import connections
    trace = tmp_path / "trace"
    n = 1500
    backend = Backend("database-postgres", {"ADAPTER": "database", "DATABASE": "postgres", **FAST}, _databases())
    backend.adapter.enqueue_many([Envelope(job=RecordJob.job_name, args=[str(trace), f"j{i}", 0.01])
                                  for i in range(n)])  # 10 ms each: the drain outlasts the restart
    worker = Worker(backend, tmp_path / "worker.log", ["-c", "4"])
    try:
        wait_for(lambda: len(ran_tokens(trace)) > 100, 60, "the drain to start")
        server().restart()
        connections["postgres"].close()
        wait_for(lambda: len(ran_tokens(trace)) == n, 120, f"all {n} jobs after the restart", interval=0.2)
        time.sleep(1.5)  # idle: every worker thread's connection has seen the restart by now
        backend.adapter.enqueue_many([Envelope(job=RecordJob.job_name, args=[str(trace), f"k{i}"]) for i in range(50)])
        n += 50
        wait_for(lambda: len(ran_tokens(trace)) == n, 60, "jobs enqueued after the restart", interval=0.2)
    finally:
        worker.stop()
    connections["postgres"].close()
    assert "AdminShutdown" in worker.output() or "failed" in worker.output()  # it did see the outage
    assert set(ran_tokens(trace)) == {f"j{i}" for i in range(n - 50)} | {f"k{i}" for i in range(50)}
    assert backend.adapter.counts().enqueued == 0
