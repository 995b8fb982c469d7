"""Redis adapter specifics: clear errors when Redis is down, one round trip for bulk,
django-redis connection reuse, prefix isolation, concurrent promotion."""
import threading
import uuid

import pytest
import redis
from django.test import override_settings

from djjobs.adapters.redis import RedisAdapter
from djjobs.envelope import Envelope
from djjobs.errors import ConfigurationError, EnqueueError
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
    commands = []
    conn_class = type(redis_adapter._conn())
    monkeypatch.setattr(conn_class, "send_command",
                        lambda self, *a, _orig=conn_class.send_command, **k: (commands.append(a[0]), _orig(self, *a, **k))[1])
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *a, _orig=redis.Redis.execute_command, **k: (commands.append(a[0]), _orig(self, *a, **k))[1])
    redis_adapter.enqueue(env())
    assert commands == ["EVALSHA"]


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
