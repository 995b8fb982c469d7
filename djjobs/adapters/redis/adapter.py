"""The Redis adapter: the production path (docs/redis.md has the data model).

Every multi-key step is one Lua script (scripts/*.lua, loaded once, called by
SHA), so a crash can never leave a job half-moved. Delivery is at-least-once:
a claimed job sits in ``running`` under a lease that the worker's supervisor
renews; if the worker dies the lease expires and ``recover_expired`` hands the
job back to the head of its queue. Lease tokens fence every later step, so a
worker whose lease expired cannot ack or fail a job that now runs elsewhere.

Producer calls raise :class:`EnqueueError` when Redis cannot be reached or refuses
the enqueue (at maxmemory, say: the scripts that only move stored jobs are admitted
there, an enqueue is not); worker calls let redis-py's ``ConnectionError`` through,
and the worker backs off and retries.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import orjson
import redis

try:  # redis-py's own packer checks every argument's type first: twice the time on a 1,000-job bulk
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis comes with djjobs[redis]
    _pack = None

from ...envelope import Envelope
from ...errors import BatchFinished, ConfigurationError, EnqueueError
from ..base import (Adapter, Claim, batch_refused, Counts, JobRecord, Page, QueueInfo, WorkerInfo, concurrency_slot, decode_or_none,
                    fenced_claim, recover_orphans, split_token, unique_lock)
from .batches import RedisBatches
from .cancel import RedisCancel
from .flow import SCAN_LIMIT, RedisFlow
from .keys import ANCHOR_SCORE, Keys
from .progress import RedisProgress
from .waits import RedisPrerequisites

logger = logging.getLogger("djjobs")
SCRIPTS = Path(__file__).with_name("scripts")
BATCH = 1000


def _script(path: Path) -> str:
    """A script's text, with the shared helpers it calls (scripts/lib/: a file is included
    when the script, or a helper included, calls one of its ``local function``s) in front,
    in file-name order, after its shebang line if it has one: Redis 7 reads script flags
    (``#!lua flags=allow-oom``: admitted at maxmemory) only from the very first line."""
    text = path.read_text()
    shebang, body = text.split("\n", 1) if text.startswith("#!") else ("", text)
    libs = {lib: lib.read_text() for lib in sorted(SCRIPTS.joinpath("lib").glob("*.lua"))}
    names = {lib: re.findall(r"^local function (\w+)\(", code, re.M) for lib, code in libs.items()}
    used, calling = set(), body
    while True:
        more = {lib for lib in libs if lib not in used and any(f"{n}(" in calling for n in names[lib])}
        if not more:
            break
        used |= more
        calling = "\n".join([body, *(libs[lib] for lib in used)])
    return "\n".join([*filter(None, [shebang]), *(libs[lib] for lib in libs if lib in used), body])


@dataclasses.dataclass(slots=True)
class _Registration:
    """An idle fetcher's registration (idle.lua): jobs handed to it are leased with
    ``token`` until ``lease_until``; ``received`` are the ids read from its channel and not
    yet reported to Redis (by idle.lua's refresh or the next fetch.lua call), where each
    one counts against the jobs the fetcher asked for until it is."""
    worker_id: str
    token: str
    lease_until: float
    queues: tuple
    received: list = dataclasses.field(default_factory=list)


class RedisAdapter(RedisProgress, RedisPrerequisites, RedisCancel, RedisBatches, RedisFlow, Adapter):
    name = "redis"
    durable = True

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.keys = Keys(self.setting("REDIS_PREFIX"))
        self.url = self.setting("REDIS_URL")
        self.client = self._connect()
        self.scripts = {path.stem: self.client.register_script(_script(path)) for path in SCRIPTS.glob("*.lua")}
        self._pubsub = None
        self._hand_channel: bytes | None = None
        self._wait_lock = threading.Lock()
        self._announced = 0.0  # when this process last said it waits for a wake-up
        self._idle: _Registration | None = None  # while this process' fetcher is registered as idle
        self._local = threading.local()
        self._flags_ok: bool | None = None  # whether the server honours script flags (_check_flags)

    def _connect(self) -> redis.Redis:
        alias = self.setting("REDIS_CACHE_ALIAS")
        if alias:
            try:
                from django_redis import get_redis_connection
                self.url = f"cache alias {alias!r}"
                return get_redis_connection(alias)
            except Exception as exc:
                raise ConfigurationError(f"DJJOBS['REDIS_CACHE_ALIAS'] = {alias!r}: cannot get a Redis connection "
                                         f"from django-redis ({exc}).") from exc
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=30,
                                        health_check_interval=30)
        except ValueError as exc:
            raise ConfigurationError(f"DJJOBS['REDIS_URL'] = {self.url!r} is not a Redis URL ({exc}); "
                                     "use redis://host:port/db.") from exc

    def run(self, name: str, *args, keys: Sequence[str] = ()) -> object:
        """Call a script by SHA on this thread's own connection: one round trip, none of
        the pool's per-call bookkeeping (the enqueue and ack hot paths). Reloads a
        script Redis forgot (restart without persistence) and reconnects once. A
        connection lost after the call was sent is ambiguous (the script may have run):
        the call is sent again, so the scripts are safe to run twice with the same
        arguments: enqueue stores (and hands off) nothing twice, fetch returns the first
        call's claims, an idle fetcher's report of the hand-offs it received sets its count
        rather than adding to it (idle.lua, fetch.lua), moves are fenced by the lease
        token. (An idle fetcher's deregistration, repeated, returns nothing the second
        time: jobs handed to it and not read wait for their lease, as when its worker dies.)"""
        script = self.scripts[name]
        if self._flags_ok is None and script.script.startswith("#!"):
            self._check_flags()
            script = self.scripts[name]
        command = ("EVALSHA", script.sha, len(keys), *keys, self.keys.prefix, *args)
        for attempt in (1, 2):
            conn = self._conn()
            try:
                if _pack is None:
                    conn.send_command(*command)
                else:  # our arguments are str, bytes and int only, which hiredis packs as redis-py would
                    conn.send_packed_command([_pack(command)])
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                conn.send_command("SCRIPT", "LOAD", script.script)
                conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                if attempt == 2:
                    raise
        conn = self._conn()
        conn.send_command(*command)
        return conn.read_response()

    def _check_flags(self) -> None:
        """Redis before 7.0 cannot compile a script with a shebang line: there the
        scripts run without their flags (and so renewals are refused at maxmemory:
        docs/redis.md). Asked once per adapter, before its first script call."""
        try:
            version = str(self.client.info("server").get("redis_version", "7"))
        except redis.ResponseError:  # INFO renamed or forbidden (managed Redis): assume a current server
            version = "7"
        self._flags_ok = int(version.split(".")[0]) >= 7
        if not self._flags_ok:
            self.scripts = {name: self.client.register_script(script.script.split("\n", 1)[1])
                            if script.script.startswith("#!") else script for name, script in self.scripts.items()}

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._local.conn = self.client.connection_pool.make_connection()
        return conn

    def _day(self, now: float | None = None) -> str:
        return dt.date.fromtimestamp(self.clock() if now is None else now).isoformat()

    # --- producer -------------------------------------------------------
    def enqueue(self, envelope: Envelope) -> str | None:
        return self.enqueue_many([envelope]).get(envelope.job_id)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        """Jobs grouped by (queue, priority, scheduled): one script call per group of
        up to 1,000, every call sent in one pipelined round trip. Each call is all or
        nothing (enqueue.lua writes nothing if Redis refuses it); a bulk refused part way
        (Redis at maxmemory) raises an EnqueueError whose ``stored`` and ``not_stored``
        say which jobs are in Redis (and will run) and which are not."""
        now = self.clock()
        limit = self.setting("MAX_PAYLOAD_BYTES")
        groups: dict[tuple, list] = {}
        single: list[tuple] = []  # flow control: one call each (a key checked or a slot taken with the store)
        waiting: list[tuple] = []  # prerequisites: one wait.lua call each, after the others (waits.py)
        batches: set[str] = set()
        for env in envelopes:
            raw = self.encode(env, limit)
            batch = env.meta.get("batch", "") if env.meta else ""
            if batch:
                batches.add(batch)
            if env.meta and "after" in env.meta:
                waiting.append((env, raw))
                continue
            lock = unique_lock(env) if env.meta else None
            slot = concurrency_slot(env) if env.meta else None
            if lock is not None or slot is not None:
                head = (*((lock.key, repr(lock.expires), lock.until, lock.conflict) if lock else ("", "", "", "")),
                        repr(now), *((slot[0], slot[1]) if slot else ("", 0)))
                if env.run_at is not None and env.run_at > now:
                    single.append((env.queue, str(env.priority), "x1", batch, *head, env.job_id, repr(env.run_at), raw))
                else:
                    single.append((env.queue, str(env.priority), "x", batch, *head, env.job_id, raw))
            elif env.run_at is not None and env.run_at > now:  # scheduled: (id, run_at, payload)
                groups.setdefault((env.queue, str(env.priority), "1", batch), []).extend(
                    (env.job_id, repr(env.run_at), raw))
            else:  # ready: (id, payload)
                groups.setdefault((env.queue, str(env.priority), "", batch), []).extend((env.job_id, raw))
        calls = [(*key, *rows[start:start + width * BATCH]) for key, rows in groups.items()
                 for width in (3 if key[2] else 2,) for start in range(0, len(rows), width * BATCH)] + single
        if batches and len(calls) + len(waiting) > 1:
            self._batches_open(batches)  # all or nothing: refused before any call (batches.py)
        if not calls:
            self._store_waiting(waiting)
            return {}
        try:
            if len(calls) == 1:
                try:
                    results = [self.run("enqueue", *calls[0])]
                except redis.ResponseError as exc:  # refused (at maxmemory: before its first write)
                    results = [exc]
            else:
                with self.client.pipeline(transaction=False) as pipe:
                    for call in calls:
                        self.scripts["enqueue"](args=[self.keys.prefix, *call], client=pipe)
                    results = pipe.execute(raise_on_error=False)  # a refused call does not hide the others
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise EnqueueError(f"Cannot reach Redis at {self.url} ({exc}); the job(s) were NOT enqueued (if the "
                               "connection broke after they were sent, Redis may have stored them: check by job_id). "
                               "Check that redis-server runs and DJJOBS['REDIS_URL'] points to it.") from exc
        except redis.ResponseError as exc:  # refused before anything was sent (loading the script)
            results = [exc] * len(calls)
        except redis.RedisError as exc:
            raise EnqueueError(f"Redis at {self.url} failed during the enqueue ({type(exc).__name__}: {exc}); "
                               "whether the job(s) were stored is unknown: check by job_id.") from exc
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        duplicates = {call[11]: r[1].decode() for call, r in zip(calls, results)  # a single call's job id: index 11
                      if isinstance(r, list) and r and r[0] == b"dup"}
        refused = next((call[3] for call, r in zip(calls, results) if isinstance(r, list) and r and r[0] == b"batch"),
                       None)
        if refused is not None and not failed:
            failed = [(i, batch_refused(call[3])) for i, (call, r) in enumerate(zip(calls, results))
                      if isinstance(r, list) and r and r[0] == b"batch"]
        if failed and isinstance(failed[0][1], BatchFinished):
            ids = [[call[11]] if call[2] in ("x", "x1") else call[4::3 if call[2] else 2] for call in calls]
            failed[0][1].stored = [j for i, r in enumerate(results) if not isinstance(r, (Exception, list))
                                   for j in ids[i]]
            failed[0][1].not_stored = [j for i, _ in failed for j in ids[i]] + [env.job_id for env, _ in waiting]
            raise failed[0][1]
        if failed:
            ids = [[call[11]] if call[2] in ("x", "x1") else call[4::3 if call[2] else 2]
                   for call in calls]  # each call's job ids (its rows from index 4, a single one's at 11)
            stored = [job_id for i, r in enumerate(results) if not isinstance(r, Exception) for job_id in ids[i]]
            not_stored = [job_id for i, _ in failed for job_id in ids[i]]
            stored = [job_id for job_id in stored if job_id not in duplicates]
            raise self._enqueue_error(failed[0][1], stored, [*not_stored, *(env.job_id for env, _ in waiting)]
                                      ) from failed[0][1]
        if waiting:
            self._store_waiting(waiting)
        return duplicates

    def _enqueue_error(self, cause: Exception, stored: list[str], not_stored: list[str]) -> EnqueueError:
        total = len(stored) + len(not_stored)
        if stored:
            fate = (f"{len(stored):,} of {total:,} jobs were stored (they will run) and {len(not_stored):,} were "
                    "NOT stored (EnqueueError.stored and .not_stored list their job ids: enqueue the not stored "
                    "ones again)")
        else:
            fate = "the job was NOT stored" if total == 1 else f"the {total:,} jobs were NOT stored (none of them)"
        if isinstance(cause, redis.exceptions.OutOfMemoryError):
            message = (f"Redis at {self.url} is at its memory limit (maxmemory) and refused the enqueue ({cause}); "
                       f"{fate}. Raise maxmemory or free memory (jobs already stored still run and are "
                       "acknowledged), and keep maxmemory-policy noeviction: any other policy may evict stored jobs.")
        else:
            message = f"Redis at {self.url} refused the enqueue ({type(cause).__name__}: {cause}); {fate}."
        return EnqueueError(message, stored=stored, not_stored=not_stored)

    def enqueue_raw(self, raw: bytes, queue: str) -> None:
        env = decode_or_none(raw)
        # Mode 'raw': its place goes in P:meta, in the same script, as for a scheduled job:
        # the payload may not say it, or may say another (scripts/lib/place.lua).
        self.run("enqueue", queue, str(env.priority if env else 0), "raw", "", env.job_id if env else uuid.uuid4().hex,
                 bytes(raw))

    # --- worker ---------------------------------------------------------
    def fetch(self, queues: Sequence[str], limit: int, timeout: float, worker_id: str, *,
              complete: Sequence[Claim] = ()) -> list[Claim]:
        """Acknowledge ``complete`` and claim in one script call. If nothing is ready, wait
        without polling: register as idle (re-checking for ready jobs in the same script),
        then listen on two channels. An enqueue into an empty queue hands its job to an
        idle fetcher on the fetcher's own channel, already leased: it starts without a claim
        round trip. Anything else that makes jobs ready publishes a wake-up; then claim.

        The registration outlives a hand-off (the fetcher stays listed) while the caller
        has free threads, so a registered fetcher reads its messages promptly and a
        handed job never waits unread past its lease. It carries ``limit``, and Redis hands
        it no more jobs than that, less those handed and not reported received (however
        many enqueue calls race with its reads: enqueue.lua); each later fetch reports the
        jobs received and the new ``limit`` in its claim call (fetch.lua). It ends when
        claims come from the queues instead, when hand-offs fill ``limit``, or with
        :meth:`stop_waiting`; each returns the jobs handed meanwhile that were not received."""
        deadline = time.monotonic() + timeout
        # A hand-off is leased from the registration's refresh: refreshed every eighth of the
        # lease (at most every second), a handed job arrives with 3/4 of its lease left at least.
        refresh = min(1.0, float(self.setting("LEASE_SECONDS")) / 8)
        claims = self._claim(queues, limit, worker_id, complete)
        while not claims and time.monotonic() < deadline:
            with self._wait_lock:
                if self._hand_channel != self.keys.hand(worker_id).encode():
                    self._listen(worker_id)
                if self._idle is None or time.monotonic() - self._announced > refresh:  # registration lives 2 s
                    if self._wait_for(queues, limit, worker_id):  # jobs are ready: claim them
                        claims = self._claim(queues, limit, worker_id)
                        break
                remaining = min(deadline - time.monotonic(), refresh)
                message = self._pubsub.get_message(timeout=remaining) if remaining > 0 else None
                handed = []
                while message is not None:  # one claim answers many wake-ups
                    if message["channel"] == self._hand_channel:
                        handed += self._handed(message["data"])
                        if handed:  # start it now; later messages wait for the next call, in order
                            break
                    message = self._pubsub.get_message(timeout=0)
                if handed:
                    if len(handed) >= limit:  # no free thread left: take no more hand-offs meanwhile
                        handed += self._unreceived()
                    return handed
            claims = self._claim(queues, limit, worker_id)
        if claims and self._idle is not None:
            with self._wait_lock:  # jobs handed meanwhile are older than the ones just claimed
                claims = self._unreceived() + claims
        return claims

    def _unreceived(self) -> list[Claim]:
        """:meth:`_stop_waiting` where jobs were claimed already: if Redis cannot be
        reached, those claims are still returned (to run), and the unreceived hand-offs
        are left to their leases, as a dead fetcher's would be."""
        try:
            return self._stop_waiting()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("Ending the idle wait failed (%s); jobs handed to this worker and not read yet "
                           "will be recovered by their leases", exc)
            return []

    def _listen(self, worker_id: str) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
        channel = self.keys.hand(worker_id)
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self.keys.wake, channel)
        self._hand_channel = channel.encode()

    def _wait_for(self, queues: Sequence[str], limit: int, worker_id: str) -> bool:
        """Register (or refresh) this fetcher as idle, for at most ``limit`` hand-offs not
        received yet (idle.lua); True if jobs are ready instead."""
        idle = self._idle or _Registration(worker_id, uuid.uuid4().hex, 0.0, tuple(queues))
        lease_until = self.clock() + self.setting("LEASE_SECONDS")
        ready = self.run("idle", "on", worker_id, idle.token, repr(lease_until), limit, len(queues), *queues,
                         *idle.received)
        idle.received = []  # forgotten on both sides
        if ready:
            return True
        idle.lease_until, idle.queues = lease_until, tuple(queues)
        self._idle, self._announced = idle, time.monotonic()
        return False

    def _handed(self, data: bytes) -> list[Claim]:
        """The job in a hand-off message, if it is for this registration (a message
        published before a deregistration is stale: that job came back from it)."""
        token, lease_until, size, rest = data.split(b":", 3)
        idle = self._idle
        if idle is None or token.decode() != idle.token:
            return []
        size = int(size)
        job_id = rest[:size].decode()
        idle.received.append(job_id)
        # The lease the job got when it was handed, which a later refresh of the registration
        # does not extend: a message read late (a frozen connection) says how late.
        return [fenced_claim(rest[size:], job_id, idle.token, idle.worker_id, float(lease_until))]

    def _stop_waiting(self) -> list[Claim]:
        """Deregister the idle fetcher; the jobs handed to it that it has not received yet."""
        idle, self._idle = self._idle, None
        if idle is None:
            return []
        result = self.run("idle", "off", idle.worker_id, idle.token, repr(idle.lease_until), 0, len(idle.queues),
                          *idle.queues, *idle.received)
        return [fenced_claim(result[i + 1], result[i].decode(), idle.token, idle.worker_id,
                             float(result[i + 2] or idle.lease_until)) for i in range(0, len(result), 3)]

    def stop_waiting(self, worker_id: str) -> list[Claim]:
        with self._wait_lock:
            return self._stop_waiting()

    def _claim(self, queues: Sequence[str], limit: int, worker_id: str,
               complete: Sequence[Claim] = ()) -> list[Claim]:
        if not complete and (not queues or limit < 1):
            return []
        token = uuid.uuid4().hex
        lease_until = self.clock() + self.setting("LEASE_SECONDS")
        acks = [v for c in complete for v in split_token(c)]
        keys = [v for c in complete if (lock := unique_lock(c.envelope)) for v in (lock.key, split_token(c)[0])]
        slots = [split_token(c)[0] for c in complete if concurrency_slot(c.envelope)]
        # Registered as idle: report the hand-offs received and the limit now (fetch.lua), or
        # enqueues would count against this fetcher jobs it has run already.
        idle = self._idle if queues else None
        report = (idle.worker_id, idle.token, len(idle.received), *idle.received) if idle else ("", "", 0)
        result = self.run("fetch", repr(lease_until), token, limit if queues else 0, self._day(), repr(self.clock()),
                          len(complete), *acks, len(keys) // 2, *keys, len(slots), *slots, *report, *queues)
        if idle is not None:
            del idle.received[:report[2]]  # the ones reported, whatever was appended since
        claims = []
        for i in range(0, len(result), 2):
            claims.append(fenced_claim(result[i + 1], result[i].decode(), token, worker_id, lease_until))
        return claims

    def complete(self, claims: Sequence[Claim]) -> None:
        if claims:
            self._claim((), 0, "", claims)

    def _move(self, claim: Claim, target: str, score: float, envelope: Envelope | None, count: str = "", *,
              replace: bool = True, expired_before: float | None = None, error: dict | None = None) -> bool:
        """``envelope`` gives the job's place (queue, priority) and, with ``replace``, its new
        payload; without one the stored payload stays and ``error`` (dead only) goes beside it."""
        job_id, token = split_token(claim)
        payload = envelope.encode() if envelope is not None and replace else ""
        queue, prio = (envelope.queue, str(envelope.priority)) if envelope is not None else ("", "")
        lock = unique_lock(envelope or claim.envelope) if target in ("dead", "discarded") else None
        limited = "1" if concurrency_slot(envelope or claim.envelope) is not None else ""
        moved = self.run("move", job_id, token, target, repr(score), payload, queue, prio, count, self._day(),
                         "" if expired_before is None else repr(expired_before),
                         orjson.dumps(error) if error is not None and envelope is None else "",
                         lock.key if lock is not None else "", limited, repr(self.clock()))
        if moved == 2:  # its cancel request ended it cancelled instead (move.lua)
            self._trim_dead("cancelled")
        return bool(moved)

    def retry(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        self._move(claim, "retry", run_at, envelope, "failed")

    def reschedule(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        self._move(claim, "scheduled", run_at, envelope)

    def discard(self, claim: Claim) -> None:
        self._move(claim, "discarded", 0, claim.envelope, "processed", replace=False)

    def kill(self, claim: Claim, envelope: Envelope | None, error: dict | None = None) -> None:
        if self._move(claim, "dead", self.clock(), envelope, "failed", error=error):
            self._trim_dead()

    def release(self, claims: Sequence[Claim]) -> None:
        for claim in reversed(claims):  # each goes to the front: the last first, its payload unchanged
            self._move(claim, "front", 0, claim.envelope, replace=False)

    def _trim_dead(self, state: str = "dead") -> int:
        """Cap the dead (or cancelled) set: DEAD_MAX_DAYS, then DEAD_MAX_JOBS."""
        cutoff = self.clock() - self.setting("DEAD_MAX_DAYS") * 86400
        return self.run("trim_dead", repr(cutoff), self.setting("DEAD_MAX_JOBS"), state)

    def heartbeat(self, worker: WorkerInfo, claims: Sequence[Claim]) -> None:
        """Renew the leases and refresh the worker's registry entry in one round trip,
        each independent of the other: at maxmemory Redis refuses the registry write
        (new memory) but admits the renewal (renew.lua's allow-oom), and a running job
        must not lose its lease to a listing. Raises a ``redis.RedisError`` naming
        which of the two failed; a claim's ``lease_until`` moves only if it was renewed."""
        now = self.clock()
        lease = self.setting("LEASE_SECONDS")
        info = orjson.dumps({"worker_id": worker.worker_id, "host": worker.host, "pid": worker.pid,
                             "queues": list(worker.queues), "concurrency": worker.concurrency,
                             "started_at": worker.started_at, "heartbeat_at": now, "busy": list(worker.busy)})
        if claims and self._flags_ok is None:
            self._check_flags()
        with self.client.pipeline(transaction=False) as pipe:
            if claims:
                self.scripts["renew"](args=[self.keys.prefix, repr(now + lease),
                                            *[v for c in claims for v in split_token(c)]], client=pipe)
            pipe.set(self.keys.worker(worker.worker_id), info, ex=max(1, math.ceil(lease * 2)))
            pipe.zadd(self.keys.workers, {worker.worker_id: now})
            results = pipe.execute(raise_on_error=False)
        renewal = results[0] if claims else None
        registry = next((r for r in results[-2:] if isinstance(r, Exception)), None)
        problems = []
        if isinstance(renewal, Exception):
            problems.append(f"Lease renewal of {len(claims)} job(s) failed: {renewal}")
        else:
            for claim in claims:
                claim.lease_until = now + lease
        if registry is not None:
            renewed = f"; its {len(claims)} lease(s) were renewed" if claims and not problems else ""
            problems.append(f"The worker-registry write failed ({registry}){renewed}")
        if problems:
            cause = renewal if isinstance(renewal, Exception) else registry
            raise type(cause)("; ".join(problems)) from cause

    def unregister(self, worker_id: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.workers, worker_id)
            pipe.delete(self.keys.worker(worker_id))
            pipe.execute()

    def recover_expired(self) -> int:
        now = self.clock()
        expired = [i.decode() for i in self.client.zrangebyscore(self.keys.running, "-inf", repr(now), start=0, num=100)]
        recovered = recover_orphans(self._leased(expired), now, self._orphan_move(now, expired_before=now))
        self.client.zremrangebyscore(self.keys.workers, "-inf", repr(now - self.setting("LEASE_SECONDS")))
        return recovered

    def abandon(self, claims: Sequence[Claim], reason: str = "") -> int:
        tokens = dict(split_token(c) for c in claims)
        held = [(i, t, raw) for i, t, raw in self._leased(list(tokens)) if tokens[i] == t]
        return recover_orphans(held, self.clock(), self._orphan_move(self.clock()), reason)

    def _leased(self, ids: list[str]) -> list[tuple[str, str, bytes]]:
        """(job id, lease token, payload) of those of ``ids`` that are leased now."""
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.leases, ids)
            pipe.hmget(self.keys.payloads, ids)
            tokens, payloads = pipe.execute()
        return [(i, t.decode(), raw) for i, t, raw in zip(ids, tokens, payloads) if t is not None and raw is not None]

    def _orphan_move(self, now: float, expired_before: float | None = None):
        def move(claim: Claim, fate: str, env: Envelope | None, error: dict | None) -> bool:
            if fate == "requeue":
                return self._move(claim, "front", 0, env, expired_before=expired_before)
            return self._move(claim, "dead", now, env, "failed", expired_before=expired_before, error=error)
        return move

    def promote_due(self) -> int:
        return int(self.run("promote", repr(self.clock()), 1000))

    # --- scheduler ------------------------------------------------------
    def claim_tick(self, name: str, tick_at: float) -> bool:
        return bool(self.client.set(self.keys.tick(name, tick_at), b"1", nx=True, ex=8 * 86400))

    def cron_states(self) -> dict[str, dict]:
        return {k.decode(): orjson.loads(v) for k, v in self.client.hgetall(self.keys.cron).items()}

    def set_cron_state(self, name: str, state: dict) -> None:
        self.client.hset(self.keys.cron, name, orjson.dumps(state))

    # --- results --------------------------------------------------------
    def save_result(self, job_id: str, result: dict, ttl: float) -> None:
        data = orjson.dumps({"expires": self.clock() + ttl, "result": result})
        self.client.set(self.keys.result(job_id), data, ex=max(1, math.ceil(ttl)) + 60)

    def load_result(self, job_id: str) -> dict | None:
        data = self.client.get(self.keys.result(job_id))
        if data is None:
            return None
        stored = orjson.loads(data)
        return stored["result"] if stored["expires"] > self.clock() else None

    # --- inspection -----------------------------------------------------
    def _queue_names(self) -> list[str]:
        return sorted(q.decode() for q in self.client.smembers(self.keys.queues))

    def _sizes(self, names: list[str]) -> dict[str, tuple[int, bytes | None]]:
        """Ready count and the id at the head of the oldest list, per queue."""
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrange(self.keys.prios(name), 0, -1)
            prios = pipe.execute()
        with self.client.pipeline(transaction=False) as pipe:
            for name, levels in zip(names, prios):
                for prio in levels:
                    pipe.llen(self.keys.queue(name, prio.decode()))
                    pipe.lindex(self.keys.queue(name, prio.decode()), 0)
            flat = pipe.execute()
        result, i = {}, 0
        for name, levels in zip(names, prios):
            size, heads = 0, []
            for _ in levels:
                size += flat[i]
                if flat[i + 1] is not None:
                    heads.append(flat[i + 1])
                i += 2
            result[name] = (size, heads)
        return result

    def counts(self) -> Counts:
        day = self._day()
        with self.client.pipeline(transaction=False) as pipe:
            for key in (self.keys.stat("processed"), self.keys.stat("failed"), self.keys.stat("processed", day),
                        self.keys.stat("failed", day)):
                pipe.get(key)
            for key in (self.keys.scheduled, self.keys.retry, self.keys.dead):
                pipe.zcard(key)
            pipe.zcount(self.keys.running, "-inf", f"({ANCHOR_SCORE}")  # not the anchor (scripts/lib/anchor.lua)
            pipe.zcard(self.keys.cancelled)
            pipe.zcard(self.keys.waits)
            values = pipe.execute()
        stats = [int(v or 0) for v in values[:4]]
        enqueued = sum(size for size, _ in self._sizes(self._queue_names()).values())
        return Counts(*stats, enqueued, *values[4:8], sum(self._blocked_lengths().values()), values[8], values[9])

    def queues(self) -> list[QueueInfo]:
        now = self.clock()
        names = sorted(set(self._queue_names()) | {q.decode() for q in self.client.smembers(self.keys.paused)})
        sizes = self._sizes(names)
        paused = {q.decode() for q in self.client.smembers(self.keys.paused)}
        result = []
        for name in names:
            size, heads = sizes[name]
            oldest = now
            if heads:
                for raw in self.client.hmget(self.keys.payloads, heads):
                    env = decode_or_none(raw) if raw else None
                    if env is not None:
                        oldest = min(oldest, env.enqueued_at)
            result.append(QueueInfo(name, size, max(0.0, now - oldest), name in paused))
        return result

    def jobs(self, state: str, *, queue: str | None = None, job: str | None = None,
             search: str | None = None, page: int = 1, per_page: int = 25) -> Page:
        offset = (page - 1) * per_page
        if state == "blocked":
            total, rows = self._blocked_page(queue, job, search, offset, per_page)
        elif state in ("scheduled", "retry", "dead", "cancelled", "waiting") and not (queue or job or search):
            key = self.keys.waits if state == "waiting" else getattr(self.keys, state)
            total = self.client.zcard(key)
            rng = self.client.zrevrange if state in ("dead", "cancelled") else self.client.zrange
            members = rng(key, offset, offset + per_page - 1, withscores=True)
            raws = self.client.hmget(self.keys.payloads, [m for m, _ in members]) if members else []
            rows = [(m, s, raw or b"") for (m, s), raw in zip(members, raws)]
        else:
            # Lua's string.lower changes ASCII letters only, so the search does the same
            out = self.run("jobs", state, queue or "", job or "", (search or "").encode().lower(), offset, per_page,
                           SCAN_LIMIT)
            total = int(out[0])
            rows = [(out[i], out[i + 1], out[i + 2]) for i in range(1, len(out), 3)]
        errors = self.client.hmget(self.keys.errors, [m for m, _, _ in rows]) if rows and state == "dead" else []
        items = []
        for n, (member, score, raw) in enumerate(rows):
            job_id = member.decode() if isinstance(member, bytes) else member
            env = decode_or_none(raw)
            at = float(score) if score not in (b"", "", None) else None
            error = orjson.loads(errors[n]) if errors and errors[n] else None
            items.append(JobRecord(job_id, state, raw, env, at, env.queue if env else "", error))
        return Page(items, total, page, per_page)

    def get(self, job_id: str) -> JobRecord | None:
        found = self.run("get", job_id)
        if not found:
            return None
        state, score, raw, queue = found
        error = self.client.hget(self.keys.errors, job_id) if state == b"dead" else None
        return JobRecord(job_id, state.decode(), raw, decode_or_none(raw), float(score) if score else None,
                         queue.decode(), orjson.loads(error) if error else None)

    def retry_now(self, job_ids: Iterable[str]) -> int:
        return self._admin("retry_now", job_ids)

    def kill_now(self, job_ids: Iterable[str]) -> int:
        moved = self._admin("kill", job_ids)
        self._trim_dead()
        return moved

    def delete(self, job_ids: Iterable[str]) -> int:
        return self._admin("delete", job_ids)

    def _admin(self, action: str, job_ids: Iterable[str]) -> int:
        ids, n = list(job_ids), 0
        for start in range(0, len(ids), BATCH):
            n += int(self.run("admin", action, repr(self.clock()), *ids[start:start + BATCH]))
        return n

    def clear(self, queue: str) -> int:
        return int(self.run("clear", queue, repr(self.clock())))

    def pause(self, queue: str) -> None:
        self.client.sadd(self.keys.paused, queue)

    def resume(self, queue: str) -> None:
        self.client.srem(self.keys.paused, queue)
        self.client.publish(self.keys.wake, b"1")

    def workers(self) -> list[WorkerInfo]:
        ids = [w.decode() for w in self.client.zrange(self.keys.workers, 0, -1)]
        if not ids:
            return []
        result, live = [], self.clock() - 2 * self.setting("LEASE_SECONDS")  # (the keys expire then too)
        for worker_id, raw in zip(ids, self.client.mget([self.keys.worker(w) for w in ids])):
            try:
                info = orjson.loads(raw) if raw else None
                if info and info["heartbeat_at"] >= live:
                    result.append(WorkerInfo(info["worker_id"], info["host"], info["pid"], info["queues"],
                                             info["concurrency"], info["started_at"], info["heartbeat_at"],
                                             info["busy"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):  # not written by a worker: not listed
                logger.warning("Worker entry %s in Redis is malformed; not listed", worker_id)
        return result

    def history(self, days: int = 30) -> list[tuple[str, int, int]]:
        today = dt.date.fromtimestamp(self.clock())
        span = [(today - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        with self.client.pipeline(transaction=False) as pipe:
            for day in span:
                pipe.get(self.keys.stat("processed", day))
                pipe.get(self.keys.stat("failed", day))
            values = pipe.execute()
        return [(day, int(values[2 * i] or 0), int(values[2 * i + 1] or 0)) for i, day in enumerate(span)]

    def check(self) -> list[str]:
        return []  # construction already validated the URL; reachability is checked at use, not at startup

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = None
            self._hand_channel = None
        if not self.setting("REDIS_CACHE_ALIAS"):
            self.client.close()
