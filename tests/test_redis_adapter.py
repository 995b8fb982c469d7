"""Redis adapter specifics: clear errors when Redis is down, one round trip for bulk,
django-redis connection reuse, prefix isolation, concurrent promotion, and the hand-off
of jobs to idle fetchers (what is handed, what is not, and what comes back)."""
import threading
import time
import uuid

import pytest
import redis
from django.test import override_settings

from djjobs.adapters.redis import RedisAdapter
from djjobs.arguments import serialize
from djjobs.envelope import Envelope
from djjobs.errors import ConfigurationError, EnqueueError
from tests.fixtures.core import check_recovery_leaves_a_lease_renewed_meanwhile
from tests.fixtures.worker import wait_for
from tests.pg_server import free_port


def env(**kw):
    return Envelope(job="tests.jobs.EchoJob", **kw)


def test_unreachable_redis_is_a_clear_enqueue_error():
    url = f"redis://127.0.0.1:{free_port()}/0"
    adapter = RedisAdapter({"REDIS_URL": url})
    with pytest.raises(EnqueueError, match=rf"Cannot reach Redis at {url}.*NOT enqueued.*redis-server"):
        adapter.enqueue(env())


def test_a_malformed_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="is not a Redis URL"):
        RedisAdapter({"REDIS_URL": "http://nope"})


def test_bulk_enqueue_is_one_round_trip(redis_adapter, monkeypatch):
    executes, commands = [], []
    monkeypatch.setattr(redis.client.Pipeline, "execute",
                        lambda self, *a, _orig=redis.client.Pipeline.execute, **k: (executes.append(1), _orig(self, *a, **k))[1])
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *a, _orig=redis.Redis.execute_command, **k: (commands.append(a[0]), _orig(self, *a, **k))[1])
    before = redis_adapter.client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    redis_adapter.enqueue_many([env() for _ in range(3500)])
    after = redis_adapter.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert executes == [1] and after - before == 4  # 4 scripts of <= 1,000 jobs, one pipeline
    assert [c for c in commands if c != "INFO"] == []  # nothing outside that pipeline
    assert redis_adapter.counts().enqueued == 3500


def test_single_enqueue_is_one_command(redis_adapter, monkeypatch):
    redis_adapter.enqueue(env())  # connects (HELLO, CLIENT SETINFO) once per thread
    sent = []  # every command written to a socket goes through send_packed_command
    conn_class = type(redis_adapter._conn())
    monkeypatch.setattr(conn_class, "send_packed_command",
                        lambda self, packed, *a, _orig=conn_class.send_packed_command, **k:
                        (sent.append(b"".join(packed) if isinstance(packed, list) else packed), _orig(self, packed, *a, **k))[1])
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *a, _orig=redis.Redis.execute_command, **k: (sent.append(a[0]), _orig(self, *a, **k))[1])
    redis_adapter.enqueue(env())
    assert len(sent) == 1 and sent[0].startswith(b"*") and b"\r\nEVALSHA\r\n" in sent[0][:30]


def test_a_django_redis_cache_connection_is_reused(redis_url):
    from django_redis import get_redis_connection
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
              "jobs": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url}}
    with override_settings(CACHES=caches):
        adapter = RedisAdapter({"REDIS_CACHE_ALIAS": "jobs", "REDIS_PREFIX": f"c{uuid.uuid4().hex[:6]}"})
        assert adapter.client is get_redis_connection("jobs")
        adapter.enqueue(job := env())
        assert adapter.fetch(["default"], 1, 0, "w")[0].envelope.job_id == job.job_id
        adapter.close()
        assert get_redis_connection("jobs").ping()  # closing the adapter left the shared client alone


def test_a_bad_cache_alias_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="REDIS_CACHE_ALIAS"):
        RedisAdapter({"REDIS_CACHE_ALIAS": "missing"})


def test_prefixes_isolate_installations(redis_url):
    one, two = RedisAdapter({"REDIS_URL": redis_url, "REDIS_PREFIX": "one"}), RedisAdapter(
        {"REDIS_URL": redis_url, "REDIS_PREFIX": "two"})
    one.enqueue(env())
    assert two.fetch(["default"], 10, 0, "w") == [] and two.counts().enqueued == 0
    assert len(one.fetch(["default"], 10, 0, "w")) == 1
    assert all(k.startswith((b"one:", b"two:")) for k in one.client.keys("*"))


def test_concurrent_promotion_moves_each_job_once(redis_url, clock):
    adapters = [RedisAdapter({"REDIS_URL": redis_url, "REDIS_PREFIX": "promo"}) for _ in range(4)]
    for a in adapters:
        a.clock = clock
    adapters[0].enqueue_many([env(run_at=clock() + 10) for _ in range(3000)])
    clock.advance(11)
    moved = []
    threads = [threading.Thread(target=lambda a=a: moved.extend(a.promote_due() for _ in range(5))) for a in adapters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(moved) == 3000
    assert adapters[0].counts().enqueued == 3000 and adapters[0].counts().scheduled == 0


def test_the_keys_every_claim_writes_keep_their_hash_table_encoding_and_hide_the_anchor(redis_adapter, clock):
    """Small hashes and sorted sets are listpacks, where every write scans the key
    (scripts/lib/anchor.lua): one anchor entry keeps the running set, leases and meta in
    the hash-table encodings, and no count, listing or lease query sees it."""
    redis_adapter.clock = clock
    redis_adapter.enqueue(job := env())
    claims = redis_adapter.fetch(["default"], 5, 0, "w")
    client, keys = redis_adapter.client, redis_adapter.keys
    assert client.object("encoding", keys.running) == b"skiplist"
    assert client.object("encoding", keys.leases) == client.object("encoding", keys.meta) == b"hashtable"
    assert redis_adapter.counts().busy == 1
    assert [r.job_id for r in redis_adapter.jobs("running").items] == [job.job_id]
    redis_adapter.complete(claims)
    assert redis_adapter.counts().busy == 0 and redis_adapter.jobs("running").total == 0
    assert client.object("encoding", keys.running) == b"skiplist"  # never emptied, so never a listpack again
    clock.advance(10 * 365 * 86400)
    assert redis_adapter.recover_expired() == 0 and client.zcard(keys.running) == 1


# --- hand-off to an idle fetcher ---------------------------------------------------

def _registered(adapter, worker_id):
    return adapter.client.exists(f"{adapter.keys.prefix}:idler:{worker_id}") == 1


def test_an_enqueue_hands_its_job_to_an_idle_fetcher_without_a_claim(redis_adapter, monkeypatch):
    claimed = []  # jobs obtained by claims (a fetch also claims, finding nothing, each second it waits)
    original = redis_adapter._claim
    monkeypatch.setattr(redis_adapter, "_claim", lambda *a, **k: (r := original(*a, **k), claimed.extend(r))[0])
    got = []
    fetcher = threading.Thread(target=lambda: got.extend(redis_adapter.fetch(["handq"], 5, 10, "w-hand")))
    fetcher.start()
    wait_for(lambda: _registered(redis_adapter, "w-hand"), 10, "the fetcher to register")
    job = env(queue="handq", args=serialize(("\x00 \U0001f600", 2**80), {})[0])
    producer = RedisAdapter({"REDIS_URL": redis_adapter.url, "REDIS_PREFIX": redis_adapter.keys.prefix})
    producer.enqueue(job)
    producer.close()
    fetcher.join(10)
    assert [c.envelope.job_id for c in got] == [job.job_id]
    assert got[0].raw == job.encode()  # byte-exact through the hand-off message
    assert claimed == []  # the job came in the message, not by a claim
    counts = redis_adapter.counts()
    assert (counts.enqueued, counts.busy) == (0, 1)
    redis_adapter.complete(got)  # the hand-off lease token fences the ack like any claim's
    counts = redis_adapter.counts()
    assert (counts.busy, counts.processed) == (0, 1)
    assert redis_adapter.client.object("encoding", redis_adapter.keys.running) == b"skiplist"  # anchored


def test_a_job_handed_but_not_received_comes_back_when_the_fetcher_stops_waiting(redis_adapter):
    assert redis_adapter.fetch(["handq"], 5, 0.2, "w-gone") == []  # returns still registered, still subscribed
    assert _registered(redis_adapter, "w-gone")
    job = env(queue="handq")
    redis_adapter.enqueue(job)  # handed: leased to the registration, published, not read
    assert redis_adapter.counts().busy == 1
    unreceived = redis_adapter.stop_waiting("w-gone")
    assert [c.envelope.job_id for c in unreceived] == [job.job_id]
    assert not _registered(redis_adapter, "w-gone")
    redis_adapter.release(unreceived)
    assert redis_adapter.counts().enqueued == 1
    # The stale message still in the subscription is ignored: the job is claimed once, by a claim.
    again = redis_adapter.fetch(["handq"], 5, 0.5, "w-gone")
    assert [c.envelope.job_id for c in again] == [job.job_id]
    assert redis_adapter.fetch(["handq"], 5, 0.3, "w-gone") == []


def test_the_next_fetch_collects_a_job_handed_between_fetches(redis_adapter):
    assert redis_adapter.fetch(["handq"], 5, 0.2, "w-between") == []
    job = env(queue="handq")
    redis_adapter.enqueue(job)
    got = redis_adapter.fetch(["handq"], 5, 0.2, "w-between")
    assert [c.envelope.job_id for c in got] == [job.job_id]
    redis_adapter.complete(got)
    assert redis_adapter.counts().processed == 1 and redis_adapter.counts().busy == 0


def test_no_hand_off_to_a_registration_nobody_listens_to_or_into_a_paused_queue(redis_adapter):
    # A fetcher that died while registered: its entry is there, nobody is subscribed.
    assert redis_adapter.run("idle", "on", "w-dead", "tok", repr(time.time() + 60), 5, 1, "handq") == 0
    redis_adapter.enqueue(env(queue="handq"))
    counts = redis_adapter.counts()
    assert (counts.enqueued, counts.busy) == (1, 0)
    # A live idle fetcher on a paused queue gets nothing handed.
    redis_adapter.pause("pausedq")
    assert redis_adapter.fetch(["pausedq"], 5, 0.2, "w-live") == []
    assert _registered(redis_adapter, "w-live")
    redis_adapter.enqueue(env(queue="pausedq"))
    counts = redis_adapter.counts()
    assert (counts.enqueued, counts.busy) == (2, 0)
    assert redis_adapter.stop_waiting("w-live") == []


def test_a_queue_with_ready_jobs_is_not_overtaken_by_a_hand_off(redis_adapter):
    first, second = env(queue="handq"), env(queue="handq")
    redis_adapter.enqueue(first)
    # Registration refuses while jobs are ready (the fetcher claims instead) ...
    assert redis_adapter.run("idle", "on", "w-late", "tok", repr(time.time() + 60), 5, 1, "handq") == 1
    assert not _registered(redis_adapter, "w-late")
    # ... and an enqueue behind ready jobs queues up even if some registration exists.
    redis_adapter.run("idle", "on", "w-other", "tok", repr(time.time() + 60), 5, 1, "otherq")
    redis_adapter.enqueue(second)
    got = redis_adapter.fetch(["handq"], 5, 0.2, "w-late")
    assert [c.envelope.job_id for c in got] == [first.job_id, second.job_id]


def test_a_long_idle_registration_does_not_grow_with_its_hand_offs(redis_adapter):
    handed_key = f"{redis_adapter.keys.prefix}:handed:w-long"
    assert redis_adapter.fetch(["handq"], 5, 0.05, "w-long") == []
    for _ in range(30):
        fetcher = threading.Thread(target=lambda: got.extend(redis_adapter.fetch(["handq"], 5, 10, "w-long")))
        got = []
        fetcher.start()
        wait_for(lambda: redis_adapter.client.lindex(f"{redis_adapter.keys.prefix}:idle:handq", 0) == b"w-long", 10,
                 "the fetcher at the head of the idle list")
        redis_adapter.enqueue(env(queue="handq"))
        fetcher.join(10)
        assert len(got) == 1
        redis_adapter.complete(got)
    assert redis_adapter.counts().processed == 30
    redis_adapter._announced = 0.0  # the once-a-second refresh, now
    assert redis_adapter.fetch(["handq"], 5, 0.05, "w-long") == []
    assert redis_adapter.client.scard(handed_key) == 0 and redis_adapter._idle.received == []


def test_a_fetcher_whose_hand_offs_fill_its_threads_stops_taking_them(redis_adapter):
    got = []
    fetcher = threading.Thread(target=lambda: got.extend(redis_adapter.fetch(["handq"], 1, 10, "w-full")))
    fetcher.start()
    wait_for(lambda: _registered(redis_adapter, "w-full"), 10, "the fetcher to register")
    redis_adapter.enqueue(env(queue="handq"))
    fetcher.join(10)
    assert len(got) == 1 and got[0].envelope is not None
    assert not _registered(redis_adapter, "w-full")  # one free thread, now busy: no more hand-offs
    redis_adapter.enqueue(env(queue="handq"))
    counts = redis_adapter.counts()
    assert (counts.enqueued, counts.busy) == (1, 1)


def test_a_bulk_into_an_empty_queue_hands_one_job_per_idle_fetcher_and_queues_the_rest(redis_adapter):
    assert redis_adapter.fetch(["handq"], 5, 0.05, "w-bulk") == []  # registered, listening
    jobs = [env(queue="handq") for _ in range(5)]
    redis_adapter.enqueue_many(jobs)
    counts = redis_adapter.counts()
    assert (counts.busy, counts.enqueued) == (1, 4)
    # The next fetch claims the queued four, which ends the registration; that returns the
    # handed one, not read yet, and it comes first: it was enqueued first.
    got = redis_adapter.fetch(["handq"], 5, 0.5, "w-bulk")
    assert [c.envelope.job_id for c in got] == [j.job_id for j in jobs]
    assert redis_adapter._idle is None
    redis_adapter.complete(got)
    assert redis_adapter.counts().processed == 5 and redis_adapter.counts().busy == 0


def test_jobs_handed_before_the_fetcher_reads_come_one_call_at_a_time_in_order(redis_adapter):
    assert redis_adapter.fetch(["handq"], 5, 0.05, "w-two") == []  # registered, listening
    first, second = env(queue="handq"), env(queue="handq")
    redis_adapter.enqueue(first)   # handed; the fetcher goes back to the head of the idle list ...
    redis_adapter.enqueue(second)  # ... so this one is handed to it too
    assert redis_adapter.counts().busy == 2
    # A hand-off returns at once (its job starts without waiting for the rest of the
    # subscription to be read); the next call reads the next message.
    got = redis_adapter.fetch(["handq"], 5, 1, "w-two")
    assert [c.envelope.job_id for c in got] == [first.job_id]
    got += redis_adapter.fetch(["handq"], 5, 1, "w-two")
    assert [c.envelope.job_id for c in got] == [first.job_id, second.job_id]
    redis_adapter.complete(got)
    assert redis_adapter.stop_waiting("w-two") == []
    counts = redis_adapter.counts()
    assert (counts.processed, counts.busy, counts.enqueued) == (2, 0, 0)


def _idle_list(adapter, queue):
    return adapter.client.lrange(f"{adapter.keys.prefix}:idle:{queue}", 0, -1)


def test_a_fetcher_is_handed_no_more_jobs_than_it_asked_for_across_enqueue_calls(redis_adapter):
    """A registration is for ``limit`` jobs, however many enqueue calls race with the
    fetcher's reads (a bulk of unique jobs is one enqueue.lua call per job): single
    enqueues into any of its queues hand it that many, and the rest wait in their queues
    for any worker. Once it has all it asked for it is listed nowhere."""
    assert redis_adapter.fetch(["handq", "otherq"], 3, 0.05, "w-cap") == []  # registered for 3, not reading
    jobs = [env(queue=q) for q in ("handq", "otherq", "handq", "otherq", "handq", "handq")]
    for job in jobs:
        redis_adapter.enqueue(job)
    counts = redis_adapter.counts()
    assert (counts.busy, counts.enqueued) == (3, 3)
    assert [redis_adapter.get(j.job_id).state for j in jobs] == ["running"] * 3 + ["ready"] * 3
    assert _idle_list(redis_adapter, "handq") == [] and _idle_list(redis_adapter, "otherq") == []


def test_a_fetch_with_hand_offs_unread_claims_only_the_rest_of_its_limit(redis_adapter):
    """Jobs handed and not read yet count against the next fetch's limit: it does not claim
    a full ``limit`` from the queues on top of them (the deregistration that claim causes
    returns them too)."""
    assert redis_adapter.fetch(["handq"], 3, 0.05, "w-rest") == []  # registered for 3, not reading
    for _ in range(7):
        redis_adapter.enqueue(env(queue="handq"))  # 3 handed, 4 queued
    got = redis_adapter.fetch(["handq"], 3, 1, "w-rest")
    while len(got) < 3:
        more = redis_adapter.fetch(["handq"], 3 - len(got), 1, "w-rest")
        assert more, "a handed job was not delivered"
        got += more
    counts = redis_adapter.counts()
    assert (len(got), counts.busy, counts.enqueued) == (3, 3, 4)
    redis_adapter.complete(got)
    assert len(redis_adapter.fetch(["handq"], 3, 1, "w-rest")) == 3  # now from the queue


def test_a_fetcher_that_reports_what_it_received_stays_listed_for_the_next_hand_off(redis_adapter, monkeypatch):
    """The fast path for single enqueues: each fetch (the worker's one round trip per
    handed job, which acknowledges it) reports the hand-offs received, so a fetcher for 2
    jobs takes every job of a trickle by hand-off, not only its first 2."""
    claimed = []
    original = redis_adapter._claim
    monkeypatch.setattr(redis_adapter, "_claim", lambda *a, **k: (r := original(*a, **k), claimed.extend(r))[0])
    assert redis_adapter.fetch(["handq"], 2, 0.05, "w-trickle") == []
    for i in range(20):
        job = env(queue="handq")
        redis_adapter.enqueue(job)
        counts = redis_adapter.counts()
        assert (counts.busy, counts.enqueued) == (1, 0), f"job {i} was queued, not handed off"
        got = redis_adapter.fetch(["handq"], 2, 1, "w-trickle")
        assert [c.envelope.job_id for c in got] == [job.job_id]
        redis_adapter.complete(got)
    assert claimed == [] and redis_adapter.counts().processed == 20


def test_a_report_sent_again_after_a_lost_reply_counts_once(redis_adapter):
    """A fetch's report (fetch.lua) sets what the fetcher may take, rather than adding to
    it: sent again after a lost reply (RedisAdapter.run), it leaves the same count."""
    assert redis_adapter.fetch(["handq"], 3, 0.05, "w-again") == []  # registered for 3
    first, second = env(queue="handq"), env(queue="handq")
    redis_adapter.enqueue(first)
    redis_adapter.enqueue(second)
    got = redis_adapter.fetch(["handq"], 3, 1, "w-again")
    assert [c.envelope.job_id for c in got] == [first.job_id]
    lost = _lose_the_next_reply(redis_adapter)
    got += redis_adapter.fetch(["handq"], 2, 1, "w-again")  # reports the first, asks for 2: room for 1 more
    assert lost == [True] and [c.envelope.job_id for c in got] == [first.job_id, second.job_id]
    third, fourth = env(queue="handq"), env(queue="handq")
    redis_adapter.enqueue(third)
    redis_adapter.enqueue(fourth)
    assert [redis_adapter.get(j.job_id).state for j in (third, fourth)] == ["running", "ready"]


def test_recovery_leaves_a_lease_renewed_meanwhile(redis_adapter, clock):
    check_recovery_leaves_a_lease_renewed_meanwhile(redis_adapter, clock, 60)


def test_listing_ready_jobs_scans_at_most_its_limit(redis_adapter, monkeypatch):
    """The admin's listing reads at most SCAN_LIMIT ready ids across all lists (a list
    read past the limit would block Redis on a big backlog)."""
    from djjobs.adapters.redis import adapter as module
    redis_adapter.enqueue_many([env(queue="a") for _ in range(3)] + [env(queue="b") for _ in range(5)])
    for limit, seen in [(2, 2), (3, 3), (4, 4), (100, 8)]:
        monkeypatch.setattr(module, "SCAN_LIMIT", limit)
        assert redis_adapter.jobs("ready").total == seen


def _lose_the_next_reply(adapter):
    """The next script call runs on Redis, but its reply is lost with the connection (a
    network blip, a proxy reset, a socket timeout): what the retry in ``run`` answers."""
    for script in adapter.scripts.values():  # loaded: the first reply is the script's own
        adapter.client.script_load(script.script)
    conn = adapter._conn()
    conn.connect()
    read = conn.read_response
    lost = []

    def lose(*args, **kwargs):
        conn.read_response = read
        read(*args, **kwargs)
        lost.append(True)
        conn.disconnect()
        raise redis.ConnectionError("reply lost (simulated)")

    conn.read_response = lose
    return lost


def test_an_enqueue_sent_again_after_a_lost_reply_stores_the_job_once(redis_adapter):
    lost = _lose_the_next_reply(redis_adapter)
    job = env()
    redis_adapter.enqueue(job)
    assert lost == [True]
    assert redis_adapter.client.lrange(f"{redis_adapter.keys.prefix}:q:default:0", 0, -1) == [job.job_id.encode()]
    assert [c.envelope.job_id for c in redis_adapter.fetch(["default"], 5, 0, "w")] == [job.job_id]


def test_a_fetch_sent_again_after_a_lost_reply_returns_the_first_claims(redis_adapter):
    jobs = [env() for _ in range(4)]
    redis_adapter.enqueue_many(jobs)
    lost = _lose_the_next_reply(redis_adapter)
    claims = redis_adapter.fetch(["default"], 2, 0, "w")
    assert lost == [True]
    assert sorted(c.envelope.job_id for c in claims) == sorted(j.job_id for j in jobs[:2])  # (order not kept)
    counts = redis_adapter.counts()
    assert (counts.busy, counts.enqueued) == (2, 2)  # no second batch claimed for nobody
    redis_adapter.complete(claims)
    assert redis_adapter.counts().processed == 2 and redis_adapter.counts().busy == 0


def test_claims_survive_a_failed_deregistration(redis_adapter, monkeypatch):
    """A fetch that claimed jobs while registered as idle ends the registration; if Redis
    fails just then, the claims made are still returned (they run), not dropped for their
    leases to recover later as worker deaths. A job handed off and not read yet is left
    to its lease, as a dead fetcher's would be."""
    assert redis_adapter.fetch(["default"], 5, 0.05, "w-1") == []  # registered as idle
    jobs = [env() for _ in range(30)]
    redis_adapter.enqueue_many(jobs)  # a bulk into an empty queue: the first is handed off
    real = redis_adapter._stop_waiting

    def broken():
        real()
        raise redis.ConnectionError("gone (simulated)")

    monkeypatch.setattr(redis_adapter, "_stop_waiting", broken)
    claims = redis_adapter.fetch(["default"], 40, 0.05, "w-1")
    assert [c.envelope.job_id for c in claims] == [j.job_id for j in jobs[1:]]
    # The job handed off meanwhile and not read is leased, for its lease to recover.
    assert redis_adapter.get(jobs[0].job_id).state == "running" and redis_adapter.counts().busy == 30


def test_a_malformed_worker_entry_is_not_listed_and_breaks_nothing(redis_adapter):
    from djjobs.adapters.base import WorkerInfo
    redis_adapter.heartbeat(WorkerInfo("good", "h", 1, ["default"], 1, redis_adapter.clock()), [])
    redis_adapter.client.zadd(redis_adapter.keys.workers, {"bad": redis_adapter.clock()})
    redis_adapter.client.set(redis_adapter.keys.worker("bad"), b"{not json")
    assert [w.worker_id for w in redis_adapter.workers()] == ["good"]
