"""The Redis data model, one place (see docs/redis.md). ``P`` is ``REDIS_PREFIX``.

    P:payloads            HASH  job_id -> envelope bytes (every job not finished)
    P:meta                HASH  job_id -> "priority|queue" of jobs scheduled, retrying or dead (and
                                raw ones); a job enqueued ready has none (scripts/lib/place.lua)
    P:queues              SET   queue names seen
    P:prios:<queue>       ZSET  priorities with ready jobs (score -priority: highest first)
    P:q:<queue>:<prio>    LIST  ready job ids, FIFO (released/recovered jobs pushed to the head)
    P:scheduled           ZSET  job_id by run_at            (set(wait=...), retry_job)
    P:retry               ZSET  job_id by run_at            (failed, will run again)
    P:dead                ZSET  job_id by failed_at         (capped: DEAD_MAX_JOBS, DEAD_MAX_DAYS)
    P:cancelled           ZSET  job_id by cancelled_at      (capped as P:dead is)
    P:waits               ZSET  job_id by enqueue time      (waiting for prerequisites: scripts/lib/waits.lua;
                                P:wjobs HASH job_id -> "policy|run_at"; P:pending:<id> SET of its
                                prerequisites not ended; P:parents HASH job_id -> ids waiting for it)
    P:cancel              HASH  job_id -> when cancelling it was asked, for running jobs (honoured
                                by move.lua; entries of jobs no longer running pruned by promote.lua)
    P:running             ZSET  job_id by lease expiry      (claimed by a worker)
    P:leases              HASH  job_id -> lease token       (fences acks of a recovered job)
    P:errors              HASH  job_id -> JSON error of a dead job whose payload is kept as it was
                                (it does not decode, or cannot be encoded again)
    (P:running, P:leases and P:meta also hold an anchor entry that keeps them out of Redis's
     listpack encoding: scripts/lib/anchor.lua)
    P:unique              HASH  uniqueness key -> "job_id|expires|until" of the job that took it (held
                                only while that job holds it: scripts/lib/unique_holder.lua)
    P:rate:<key>          ZSET  rate-limit window: one member per start, by time (expires with its period)
    P:rates               HASH  rate-limit key -> "limit|period" (the admin's listing)
    P:cjobs               HASH  job_id -> "<limit>|<a or b>|<key>" of every stored concurrency-limited job
                                (b: blocked); P:slots:<key> SET of the ids holding its slots;
                                P:blocked:<key> LIST of its blocked ids, FIFO; P:ckeys HASH key in use ->
                                limit (scripts/lib/slots.lua)
    P:paused              SET   paused queue names
    P:workers             ZSET  worker_id by last heartbeat; P:worker:<id> STRING JSON info
    P:stat:processed|failed[:<day>]  counters (daily ones expire after 400 days)
    P:tick:<name>:<tick>  STRING  cron tick claimed (SET NX, expires after 8 days)
    P:cron                HASH  entry name -> JSON state
    P:result:<job_id>     STRING JSON task result (expires)
    P:waiting             STRING present while a fetcher waits (PX 2000): enqueues then PUBLISH P:wake
    P:idle:<queue>        LIST  idle fetchers (worker ids) an enqueue may hand a job to
    P:idler:<worker_id>   STRING "token|lease_until" of that fetcher's registration (PX 2000)
    P:asked:<worker_id>   STRING how many jobs it may hold unreceived (its fetch's limit; PX 2000 with P:idler)
    P:handed:<worker_id>  SET   job ids handed to it (published on P:hand:<worker_id>), not yet confirmed
                                received: enqueue.lua hands it a job only while these are fewer than P:asked
"""


# The score of the anchor entry in P:running (scripts/lib/anchor.lua): 3000-01-01, after any lease.
ANCHOR_SCORE = 32503680000


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix
        p = prefix
        self.payloads, self.meta, self.queues = f"{p}:payloads", f"{p}:meta", f"{p}:queues"
        self.scheduled, self.retry, self.dead, self.running = f"{p}:scheduled", f"{p}:retry", f"{p}:dead", f"{p}:running"
        self.leases, self.paused, self.workers = f"{p}:leases", f"{p}:paused", f"{p}:workers"
        self.errors, self.unique, self.rates = f"{p}:errors", f"{p}:unique", f"{p}:rates"
        self.cjobs, self.ckeys = f"{p}:cjobs", f"{p}:ckeys"
        self.cancelled, self.cancel = f"{p}:cancelled", f"{p}:cancel"
        self.waits = f"{p}:waits"  # (P:waiting is the idle fetchers' flag)
        self.cron, self.waiting, self.wake = f"{p}:cron", f"{p}:waiting", f"{p}:wake"

    def queue(self, name: str, priority: int | str) -> str:
        return f"{self.prefix}:q:{name}:{priority}"

    def prios(self, name: str) -> str:
        return f"{self.prefix}:prios:{name}"

    def hand(self, worker_id: str) -> str:
        return f"{self.prefix}:hand:{worker_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def stat(self, kind: str, day: str | None = None) -> str:
        return f"{self.prefix}:stat:{kind}" + (f":{day}" if day else "")

    def tick(self, name: str, tick_at: float) -> str:
        return f"{self.prefix}:tick:{name}:{tick_at!r}"

    def slots(self, key: str) -> str:
        return f"{self.prefix}:slots:{key}"

    def blocked(self, key: str) -> str:
        return f"{self.prefix}:blocked:{key}"

    def rate(self, key: str) -> str:
        return f"{self.prefix}:rate:{key}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"
