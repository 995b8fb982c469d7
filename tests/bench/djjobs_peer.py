"""djjobs' database adapter in the database peer benchmark (../shared/bench/dbpeers):
drop this file into bench/dbpeers/systems/ (tests/bench/run_peers.sh does) and run
it beside django-tasks-db, django-q2 and Procrastinate, same workloads and databases.
The worker imports this module through DJJOBS["JOB_MODULES"], so IncrJob and
LatencyJob are registered there.
"""

META = {
    "system": "djjobs",
    "order": 0,
    "enabled": True,
    "dbs": ["sqlite", "postgres"],
    "dists": ["django", "djjobs", "psycopg"],
    "installed_apps": ["djjobs"],
    "settings": {"DJJOBS": {"ADAPTER": "database", "QUEUES": ["default"], "JOB_MODULES": ["systems.djjobs_peer"],
                            "FINISHED_RETENTION_SECONDS": 0}},
    "bulk": "djjobs.perform_all_later([IncrJob() x 1000]) (one multi-row INSERT)",
    "unfinished_sql": "SELECT count(*) FROM djjobs_job WHERE state IN ('ready', 'scheduled', 'retry', 'running')",
    "variants": {
        "p2-c8": {
            "desc": "`manage.py runjobs -p 2 -c 8`: 2 worker processes x 8 threads (one supervisor)",
            "workers": [["{python}", "manage.py", "runjobs", "-p", "2", "-c", "8", "-v", "0"]],
            "stop_signal": "TERM",
        },
    },
}

from djjobs import Job, get_adapter, perform_all_later  # noqa: E402

from systems import common  # noqa: E402


class IncrJob(Job):
    def perform(self):
        common.job_incr()


class LatencyJob(Job):
    def perform(self, enqueue_ts):
        common.job_latency(enqueue_ts)


def enqueue_incr():
    IncrJob.perform_later()


def enqueue_incr_bulk(k):
    perform_all_later([IncrJob() for _ in range(k)])


def enqueue_latency(ts):
    LatencyJob.perform_later(ts)


def queue_state():
    counts = get_adapter().counts()
    return {"queued": counts.enqueued, "running": counts.busy, "succeeded": counts.processed,
            "failed": counts.failed}


def versions():
    return common.dist_versions(*META["dists"])
