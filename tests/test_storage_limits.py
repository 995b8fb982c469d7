"""Storage at its limits, on real servers: redis-server at `maxmemory` (noeviction, filled
with junk keys) and PostgreSQL stopped and started again.

Promised: at the limit, work on jobs already stored goes on (leases are renewed, jobs are
acknowledged and moved), while a new enqueue is refused with an EnqueueError that says
what happened and, for a bulk, exactly which jobs were stored. A database that is down
is an EnqueueError naming the database alias; the caller's atomic() still rolls back.
"""
from __future__ import annotations

import collections
import time
import uuid

import pytest
import redis

from djjobs.adapters.base import WorkerInfo
from djjobs.adapters.redis import RedisAdapter
from djjobs.envelope import Envelope
from djjobs.errors import EnqueueError
from tests.fixtures.redis import RedisServer, require_redis
from tests.fixtures.worker import Backend, Worker, wait_for
from tests.worker_jobs import RecordJob

pytestmark = pytest.mark.timeout(120)


def env(**kw) -> Envelope:
    return Envelope(job="tests.jobs.EchoJob", **kw)


# --- Redis at maxmemory -------------------------------------------------------
@pytest.fixture(scope="module")
def small_redis():
    """A redis-server of this module's own: its maxmemory is changed by the tests."""
    require_redis()
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def limited(small_redis):
    """A client on the module's server, reset to no limit before and after each test."""
    client = redis.Redis.from_url(small_redis.url)
    client.config_set("maxmemory", 0)
    client.flushall()
    client.config_set("maxmemory-policy", "noeviction")
    yield client
    client.config_set("maxmemory", 0)
    client.flushall()
    client.close()


def fill_to_maxmemory(client: redis.Redis) -> None:
    """Junk keys, then maxmemory below the memory used: every write that needs memory is
    refused from now on (by a margin no allocator fluctuation closes)."""
    with client.pipeline(transaction=False) as pipe:
        for i in range(50):
            pipe.set(f"junk:{i}", b"x" * 100_000)
        pipe.execute()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 1_000_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", b"y")


def adapter_on(server: RedisServer, **options) -> RedisAdapter:
    return RedisAdapter({"REDIS_URL": server.url, "REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}", **options})


def worker_info(worker_id: str = "w1") -> WorkerInfo:
    return WorkerInfo(worker_id, "host", 1, ["default"], 1, time.time())


def test_at_maxmemory_a_lease_is_renewed_and_the_job_acknowledged(small_redis, limited):
    adapter = adapter_on(small_redis, LEASE_SECONDS=30)
    adapter.enqueue_many([env(), env()])
    first, second = adapter.fetch(["default"], 2, 0, "w1")
    fill_to_maxmemory(limited)
    before = first.lease_until
    time.sleep(0.01)
    with pytest.raises(redis.RedisError) as caught:
        adapter.heartbeat(worker_info(), [first, second])
    message = str(caught.value)
    assert "worker-registry write failed" in message and "maxmemory" in message
    assert "Lease renewal" not in message  # the renewal itself succeeded
    assert first.lease_until > before
    assert float(limited.zscore(adapter.keys.running, first.envelope.job_id)) == first.lease_until
    assert adapter.fetch(["default"], 1, 0, "w1", complete=[first]) == []  # acknowledged at the limit
    assert adapter.get(first.envelope.job_id) is None and adapter.counts().processed == 1
    adapter.release([second])  # a move (move.lua) at the limit
    assert adapter.get(second.envelope.job_id).state == "ready"
    adapter.close()


def test_a_failing_renewal_is_named_and_does_not_stop_the_registry_write(small_redis, limited):
    adapter = adapter_on(small_redis)
    adapter.enqueue(env())
    [claim] = adapter.fetch(["default"], 1, 0, "w1")
    before = claim.lease_until
    limited.rename(adapter.keys.leases, f"{adapter.keys.prefix}:moved")
    limited.set(adapter.keys.leases, b"not a hash")  # renew.lua's HGET now fails: WRONGTYPE
    with pytest.raises(redis.RedisError, match=r"Lease renewal of 1 job\(s\) failed: .*WRONGTYPE"):
        adapter.heartbeat(worker_info(), [claim])
    assert claim.lease_until == before  # not renewed: not pretended
    assert [w.worker_id for w in adapter.workers()] == ["w1"]  # the registry write went through
    adapter.close()


def test_enqueue_at_maxmemory_is_refused_with_an_enqueue_error(small_redis, limited):
    adapter = adapter_on(small_redis)
    fill_to_maxmemory(limited)
    job = env()
    with pytest.raises(EnqueueError) as caught:
        adapter.enqueue(job)
    message = str(caught.value)
    assert small_redis.url in message and "maxmemory" in message and "NOT stored" in message
    assert "noeviction" in message
    assert caught.value.not_stored == [job.job_id] and caught.value.stored == []
    assert adapter.get(job.job_id) is None
    adapter.close()


def test_a_server_error_at_enqueue_is_an_enqueue_error(small_redis, limited):
    adapter = adapter_on(small_redis)
    limited.set(adapter.keys.payloads, b"not a hash")  # enqueue.lua's HEXISTS fails: WRONGTYPE
    job = env()
    with pytest.raises(EnqueueError, match=rf"Redis at {small_redis.url} refused.*WRONGTYPE.*NOT stored") as caught:
        adapter.enqueue(job)
    assert caught.value.not_stored == [job.job_id]
    with pytest.raises(EnqueueError, match="WRONGTYPE") as caught:
        adapter.enqueue_many([env(queue=f"q{i}") for i in range(3)])  # the pipelined path
    assert len(caught.value.not_stored) == 3 and caught.value.stored == []
    adapter.close()


def test_a_bulk_straddling_maxmemory_says_exactly_which_jobs_were_stored(small_redis, limited):
    adapter = adapter_on(small_redis)
    jobs = [env(args=["x" * 2000, i]) for i in range(5000)]  # 5 script calls of ~2 MB each
    used = int(limited.info("memory")["used_memory"])
    limited.config_set("maxmemory", used + 3_000_000)  # room for one or two of them
    with pytest.raises(EnqueueError) as caught:
        adapter.enqueue_many(jobs)
    error = caught.value
    ids = [j.job_id for j in jobs]
    assert 0 < len(error.stored) < len(ids) and error.stored + error.not_stored == ids
    assert f"{len(error.stored):,} of {len(ids):,}" in str(error) and "maxmemory" in str(error)
    assert all(adapter.get(i) is not None for i in error.stored[::97])
    assert all(adapter.get(i) is None for i in error.not_stored[::97])
    assert adapter.counts().enqueued == len(error.stored)
    adapter.close()


def ran(path) -> collections.Counter:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split()[1] for line in path.read_text().splitlines() if line.startswith("ran "))


@pytest.mark.django_db(transaction=True)
def test_a_worker_at_maxmemory_runs_a_job_longer_than_its_lease_once(small_redis, limited, tmp_path):
    trace = tmp_path / "trace"
    backend = Backend("redis", {"ADAPTER": "redis", "REDIS_URL": small_redis.url, "REDIS_PREFIX": "m",
                                "LEASE_SECONDS": 2, "POLL_INTERVAL": 0.2})
    backend.adapter.enqueue(job := Envelope(job=RecordJob.job_name, args=[str(trace), "long", 6]))
    worker = Worker(backend, tmp_path / "worker.log", ["-c", "2"])
    try:
        wait_for(lambda: trace.exists() and "start long" in trace.read_text(), 30, "the job to start")
        fill_to_maxmemory(limited)
        wait_for(lambda: ran(trace)["long"], 30, "the job to finish")
        time.sleep(3)  # past a lease: a recovered copy would have started by now
        assert trace.read_text().count("start long") == 1, worker.output()
        wait_for(lambda: backend.adapter.get(job.job_id) is None and backend.adapter.counts().processed == 1,
                 10, "the acknowledgement at the limit")
    finally:
        worker.stop()
    output = worker.output()
    assert "worker-registry write failed" in output and "Lease renewal" not in output, output


# --- PostgreSQL stopped and started again -------------------------------------------
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_enqueue_while_postgres_is_down_is_an_enqueue_error_and_recovers_by_itself():
    from django.db import transaction

    from djjobs.adapters.database import DatabaseAdapter
    from tests.fixtures.database import require_postgres
    from tests.pg_plugin import server
    require_postgres()
    adapter = DatabaseAdapter({"DATABASE": "postgres"})
    adapter.enqueue(env())  # connected before the server goes away
    single, bulk = env(), [env() for _ in range(20)]
    server().stop()
    try:
        with pytest.raises(EnqueueError, match=r"Could not store the job in database 'postgres'.*it was NOT stored.*"
                                               r"Cause: OperationalError"):
            adapter.enqueue(single)
        with pytest.raises(EnqueueError, match=r"20 jobs in database 'postgres'.*none of them was stored"):
            adapter.enqueue_many(bulk)  # the COPY path
    finally:
        server().start()
    adapter.enqueue(after := env())  # the broken connection was replaced: no close_old_connections() needed
    assert adapter.get(after.job_id) is not None
    assert adapter.get(single.job_id) is None and all(adapter.get(e.job_id) is None for e in bulk)

    first = env()
    with pytest.raises(EnqueueError, match=r"inside transaction.atomic\(\) the whole transaction fails"):
        with transaction.atomic(using="postgres"):
            adapter.enqueue(first)  # in this transaction
            server().restart()
            adapter.enqueue(env())
    adapter.enqueue(again := env())
    assert adapter.get(first.job_id) is None and adapter.get(again.job_id) is not None
    adapter.close()
