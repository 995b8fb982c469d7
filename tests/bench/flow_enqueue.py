"""Single-enqueue cost of flow control: plain vs unique vs concurrency-limited jobs, in
one process, alternating blocks of 1,000 perform_later calls (docs/flow-control.md).

    .venv/bin/python tests/bench/flow_enqueue.py redis redis://127.0.0.1:6379/15
    .venv/bin/python tests/bench/flow_enqueue.py sqlite /tmp/flow-bench.sqlite3

The Redis database given is flushed first; the SQLite file is created (migrated) anew.
Prints the median microseconds per enqueue of each kind and its ratio to plain."""
import os
import statistics
import sys
import time

import django
from django.conf import settings

kind, target = sys.argv[1], sys.argv[2]
if kind == "redis":
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    djjobs = {"ADAPTER": "redis", "REDIS_URL": target, "QUEUES": ["default"]}
else:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": target, "OPTIONS": {
        "transaction_mode": "IMMEDIATE", "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}}
    djjobs = {"ADAPTER": "database", "QUEUES": ["default"]}
settings.configure(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "djjobs"],
                   DATABASES=databases, DJJOBS=djjobs, USE_TZ=True, LOGGING={"version": 1})
django.setup()
if kind == "redis":
    from djjobs import get_adapter
    get_adapter().client.flushdb()
else:
    from django.core.management import call_command
    call_command("migrate", verbosity=0)

from djjobs import Job  # noqa: E402


class PlainJob(Job):
    job_name = "bench.PlainJob"

    def perform(self, n):
        pass


class UniqueJob(Job):
    job_name = "bench.UniqueJob"
    unique_for = 3600

    def perform(self, n):
        pass


class LimitedJob(Job):
    job_name = "bench.LimitedJob"
    concurrency_limit = 10  # one key: after 10, every enqueue is stored blocked

    def perform(self, n):
        pass


BLOCK, ROUNDS = 1000, 5
counter = iter(range(10**9))


def block(cls) -> float:
    enqueue, args = cls.perform_later, [next(counter) for _ in range(BLOCK)]
    started = time.perf_counter()
    for arg in args:
        enqueue(arg)
    return (time.perf_counter() - started) / BLOCK * 1e6


kinds = {"plain": PlainJob, "unique": UniqueJob, "limited": LimitedJob}
for cls in kinds.values():
    block(cls)  # warm-up
results = {name: [block(cls) for _ in range(1)] for name, cls in kinds.items()}
for _ in range(ROUNDS - 1):
    for name, cls in kinds.items():
        results[name].append(block(cls))
plain = statistics.median(results["plain"])
print(kind, " ".join(f"{name} {statistics.median(v):.1f} us ({statistics.median(v) / plain:.2f}x)"
                     for name, v in results.items()))
