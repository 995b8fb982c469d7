"""djjobs in the Redis peer benchmark (../shared/bench/peers): drop this file into
bench/peers/systems/ (tests/bench/run_peers.sh does) and run it beside the peers.

The worker is `python -m django runjobs` with this module as DJANGO_SETTINGS_MODULE;
the job classes are defined here, so the worker registers them when Django loads its
settings. Python >= 3.12: it runs in bench/.venv-db, with djjobs[redis] installed.
"""

META = {
    "system": "djangojobs",
    "order": 0,
    "enabled": True,
    "python": "bench/.venv-db/bin/python",
    "env": {"DJANGO_SETTINGS_MODULE": "systems.djangojobs_peer"},
    "bulk": "djjobs.perform_all_later([IncrJob() x 1000]) (one script call, one round trip)",
    "variants": {
        "c10-x1": {"desc": "`runjobs -p 1 -c 10`: one worker process x 10 threads (plus its supervisor)",
                   "workers": [["{python}", "-m", "django", "runjobs", "-p", "1", "-c", "10", "-v", "0"]],
                   "stop_signal": "TERM"},
        "c10-x2": {"desc": "`runjobs -p 2 -c 10`: two worker processes x 10 threads (one supervisor)",
                   "workers": [["{python}", "-m", "django", "runjobs", "-p", "2", "-c", "10", "-v", "0"]],
                   "stop_signal": "TERM"},
    },
}

import os  # noqa: E402

from systems.common import dist_versions, job_incr, job_latency, redis_url  # noqa: E402

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "djjobs"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
LOGGING = {"version": 1, "root": {"level": "WARNING"}, "loggers": {"djjobs": {"level": "WARNING"}}}
DJJOBS = {"ADAPTER": "redis", "REDIS_URL": redis_url(), "REDIS_PREFIX": "djjobs", "QUEUES": ["default"]}

from djjobs import Job, perform_all_later  # noqa: E402


class IncrJob(Job):
    enqueue_after_commit = False

    def perform(self):
        job_incr()


class LatencyJob(Job):
    enqueue_after_commit = False

    def perform(self, enqueue_ts):
        job_latency(enqueue_ts)


def client_setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "systems.djangojobs_peer")
    import django
    django.setup()


def enqueue_incr():
    IncrJob.perform_later()


def enqueue_incr_bulk(k):
    perform_all_later([IncrJob() for _ in range(k)])


def enqueue_latency(ts):
    LatencyJob.perform_later(ts)


def pending():
    from djjobs import get_adapter
    return sum(q.size for q in get_adapter().queues() if q.name == "default")


def versions():
    return dist_versions("djjobs", "django", "redis", "hiredis")
