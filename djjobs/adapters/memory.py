"""In-process storage implementing the whole adapter contract.

It is the reference implementation the conformance suite holds every other
adapter to, and the store under the ``async`` and ``test`` adapters. Nothing
survives the process: not durable, by design.
"""
from __future__ import annotations

import dataclasses
import collections
import datetime as dt
import heapq
import itertools
import threading
import uuid
from typing import Iterable, Sequence

from ..envelope import Envelope
from .base import (Adapter, Claim, ConcurrencyUse, Counts, JobRecord, Page, QueueInfo, RateUse, UniqueHold, WorkerInfo,
                   concurrency_slot, decode_or_none, fenced_claim, recover_orphans, split_token, unique_lock,
                   with_prerequisites_last)
from .local import LocalRates, LocalResults
from .memory_batches import MemoryBatches
from .memory_cancel import MemoryCancel
from .memory_prereqs import MemoryPrerequisites
from .memory_progress import MemoryProgress


@dataclasses.dataclass
class _Rec:
    raw: bytes
    queue: str
    priority: int
    enqueued_at: float
    state: str
    at: float | None = None
    seq: int = 0
    token: str | None = None  # the claim's token, "<lease token>:<job id>" as on the durable adapters
    worker_id: str | None = None
    lease_until: float = 0.0
    error: dict | None = None  # stored beside a payload kept as it was (JobRecord.error)
    unique: str | None = None  # the uniqueness key it took, if any
    slot: tuple[str, int] | None = None  # its concurrency (key, limit), if any




class MemoryAdapter(MemoryProgress, MemoryPrerequisites, MemoryCancel, MemoryBatches, Adapter):
    """All jobs in this process' memory, guarded by one lock."""

    name = "memory"

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self._cond = threading.Condition()
        self._recs: dict[str, _Rec] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = {}
        self._seq = itertools.count(1)
        self._front = itertools.count(-1, -1)
        self._stats: dict[str, list[int]] = {}
        self._totals = [0, 0]
        self._paused: set[str] = set()
        self._ticks: set[tuple[str, float]] = set()
        self._cron: dict[str, dict] = {}
        self._results = LocalResults(lambda: self.clock())
        self._workers: dict[str, WorkerInfo] = {}
        self._unique: dict[str, tuple[str, float, str]] = {}  # key -> (job id, expires, until)
        self._rates = LocalRates(lambda: self.clock())
        self._slots: dict[str, set[str]] = {}  # concurrency key -> ids of the jobs holding its slots
        self._blocked: dict[str, collections.deque] = {}  # concurrency key -> blocked job ids, FIFO
        self._cancels: dict[str, float] = {}  # running job id -> when its cancellation was asked
        self._children: dict[str, list[str]] = {}  # job id -> ids of the jobs waiting for it
        self._pending: dict[str, tuple[set[str], str]] = {}  # waiting job -> (prerequisites not ended, policy)
        self._batch_init()

    # --- internals (caller holds the lock) ------------------------------------
    def _put_ready(self, job_id: str, rec: _Rec, front: bool = False) -> None:
        rec.state, rec.at, rec.token, rec.worker_id, rec.error = "ready", None, None, None, None
        rec.seq = next(self._front) if front else next(self._seq)
        heapq.heappush(self._ready.setdefault(rec.queue, []), (-rec.priority, rec.seq, job_id))
        self._cond.notify_all()

    def _become_ready(self, job_id: str, rec: _Rec, front: bool = False) -> None:
        """Ready, taking a concurrency slot if the job has a key (one it holds already, after
        a release or recovery, is kept); blocked, behind the key's others, if none is free."""
        if rec.slot is None:
            self._put_ready(job_id, rec, front)
            return
        key, limit = rec.slot
        holders = self._slots.setdefault(key, set())
        if job_id not in holders:
            if self._blocked.get(key) or self._free(key, limit) <= 0:
                rec.state, rec.at, rec.token, rec.worker_id, rec.seq = "blocked", None, None, None, next(self._seq)
                self._blocked.setdefault(key, collections.deque()).append(job_id)
                return
            holders.add(job_id)
        self._put_ready(job_id, rec, front)

    def _free(self, key: str, limit: int) -> int:
        """Free slots of ``key``: a holder no longer ready or running does not count."""
        holders = self._slots.get(key, set())
        for job_id in [i for i in holders if (r := self._recs.get(i)) is None or r.state not in ("ready", "running")]:
            holders.discard(job_id)
        return limit - len(holders)

    def _let_go(self, job_id: str, rec: _Rec | None) -> None:
        """The job's outcome is stored: its slot goes to the key's oldest blocked jobs."""
        if rec is not None and rec.slot is not None:
            self._slots.get(rec.slot[0], set()).discard(job_id)
            self._unblock(*rec.slot)

    def _unblock(self, key: str, limit: int) -> None:
        blocked = self._blocked.get(key)
        while blocked and self._free(key, limit) > 0:
            job_id = blocked.popleft()
            rec = self._recs.get(job_id)
            if rec is not None and rec.state == "blocked":
                self._slots.setdefault(key, set()).add(job_id)
                self._put_ready(job_id, rec)
        if blocked is not None and not blocked:
            del self._blocked[key]

    def _holder(self, key: str, now: float) -> str | None:
        """The job holding ``key`` now, from that job's own state (contract: base.py)."""
        job_id, expires, until = self._unique.get(key, ("", 0.0, ""))
        rec = self._recs.get(job_id)
        if rec is None or expires <= now or rec.unique != key:
            return None
        if rec.state in ("ready", "scheduled", "retry", "blocked") or (rec.state == "running" and until == "finish"):
            return job_id
        return None

    def _ended(self, job_id: str, rec: _Rec, how: str = "") -> None:
        """The job is gone, dead or cancelled (``how``: "" for a success): forget the uniqueness
        key it took (bounded memory; holding is decided by _holder), take it out of its key's
        blocked line, let its slot go, and settle the jobs waiting for it."""
        if rec.unique is not None and self._unique.get(rec.unique, ("",))[0] == job_id:
            del self._unique[rec.unique]
        if rec.slot is not None and job_id in self._blocked.get(rec.slot[0], ()):
            self._blocked[rec.slot[0]].remove(job_id)
        self._let_go(job_id, rec)
        self._pending.pop(job_id, None)
        self._parent_ended(job_id, how)

    def _store(self, env: Envelope, raw: bytes, now: float) -> str | None:
        lock = unique_lock(env)
        if lock is not None:
            holder = self._holder(lock.key, now)
            if holder is not None:
                if lock.conflict != "replace":
                    return holder
                if self._recs[holder].state != "running":  # its heap entry is skipped when popped
                    self._ended(holder, self._recs.pop(holder), "deleted")
            self._unique[lock.key] = (env.job_id, lock.expires, lock.until)
        rec = _Rec(raw, env.queue, env.priority, env.enqueued_at, "ready", unique=lock.key if lock else None,
                   slot=concurrency_slot(env))
        self._recs[env.job_id] = rec
        batch_id = env.meta.get("batch") if env.meta else None
        if batch_id is not None:
            self._batch_join(env.job_id, batch_id)
        if env.meta and "after" in env.meta and self._waits(env, rec, now):
            if batch_id is not None and (env.job_id not in self._recs or rec.state == "dead"):  # ended at once
                self._batch_ended(env.job_id, "dead" if env.job_id in self._recs else "discarded")
            return None
        if env.run_at is not None and env.run_at > now:
            rec.state, rec.at = "scheduled", env.run_at
            self._cond.notify_all()
        else:
            self._become_ready(env.job_id, rec)
        return None

    def _count(self, failed: bool, n: int = 1) -> None:
        day = dt.date.fromtimestamp(self.clock()).isoformat()
        self._stats.setdefault(day, [0, 0])[failed] += n
        self._totals[failed] += n

    def _owned(self, claim: Claim) -> _Rec | None:
        rec = self._recs.get(split_token(claim)[0])
        return rec if rec is not None and rec.state == "running" and rec.token == claim.token else None

    def _replace(self, claim: Claim, envelope: Envelope | None, state: str, at: float | None,
                 error: dict | None = None) -> str | None:
        """Store a claimed job's outcome; returns the state it ended in (a retry or reschedule
        with a cancel request ends cancelled), None when the claim is not held."""
        rec = self._owned(claim)
        if rec is None:
            return None
        job_id = split_token(claim)[0]
        redirected = self._cancels.pop(job_id, None) is not None and state in ("retry", "scheduled")
        if redirected:
            state, at = "cancelled", self.clock()  # its cancel request is honoured (contract)
        if envelope is not None:
            rec.raw, rec.queue, rec.priority = envelope.encode(), envelope.queue, envelope.priority
        rec.state, rec.at, rec.token, rec.worker_id, rec.error = state, at, None, None, error
        if state in ("dead", "cancelled"):
            self._ended(split_token(claim)[0], rec, state)
        else:  # retry or scheduled: it keeps its uniqueness key, not its slot
            self._let_go(split_token(claim)[0], rec)
        self._cond.notify_all()
        if redirected:
            self._trim_dead("cancelled")
        return state

    def _trim_dead(self, state: str = "dead") -> None:
        """Cap the dead (or cancelled) jobs: DEAD_MAX_DAYS, then DEAD_MAX_JOBS."""
        dead = sorted((r.at, i) for i, r in self._recs.items() if r.state == state)
        cutoff = self.clock() - self.setting("DEAD_MAX_DAYS") * 86400
        excess = len(dead) - self.setting("DEAD_MAX_JOBS")
        for n, (at, job_id) in enumerate(dead):
            if n < excess or at < cutoff:
                del self._recs[job_id]

    def _next_due(self) -> float | None:
        times = [r.at for r in self._recs.values() if r.state in ("scheduled", "retry")]
        return min(times) if times else None

    # --- producer -------------------------------------------------------
    def enqueue(self, envelope: Envelope) -> str | None:
        raw = self.encode(envelope)
        with self._cond:
            if envelope.meta and "batch" in envelope.meta:
                self._batch_admit([envelope])
            return self._store(envelope, raw, self.clock())

    def enqueue_raw(self, raw: bytes, queue: str) -> None:
        env = decode_or_none(raw)
        job_id = env.job_id if env else uuid.uuid4().hex
        with self._cond:
            rec = _Rec(bytes(raw), queue, env.priority if env else 0, env.enqueued_at if env else self.clock(), "ready")
            self._recs[job_id] = rec
            self._put_ready(job_id, rec)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        encoded = [(env, self.encode(env)) for env in with_prerequisites_last(envelopes)]
        duplicates = {}
        with self._cond:
            self._batch_admit(envelopes)
            now = self.clock()
            for env, raw in encoded:
                holder = self._store(env, raw, now)
                if holder is not None:
                    duplicates[env.job_id] = holder
        return duplicates

    # --- worker ---------------------------------------------------------
    def fetch(self, queues: Sequence[str], limit: int, timeout: float, worker_id: str, *,
              complete: Sequence[Claim] = ()) -> list[Claim]:
        if complete:
            self.complete(complete)
        deadline = self.clock() + timeout
        with self._cond:
            while True:
                self._promote_locked()
                claims = self._claim_locked(queues, limit, worker_id)
                remaining = deadline - self.clock()
                if claims or remaining <= 0:
                    return claims
                due = self._next_due()
                self._cond.wait(min(remaining, max(0.001, due - self.clock())) if due else remaining)

    def _claim_locked(self, queues: Sequence[str], limit: int, worker_id: str) -> list[Claim]:
        claims: list[Claim] = []
        lease_until = self.clock() + self.setting("LEASE_SECONDS")
        for queue in (sorted(self._ready) if queues is None else queues):
            heap = self._ready.get(queue)
            while heap and len(claims) < limit and queue not in self._paused:
                _, seq, job_id = heapq.heappop(heap)
                rec = self._recs.get(job_id)
                if rec is None or rec.state != "ready" or rec.seq != seq:
                    continue  # deleted or moved since it was pushed
                rec.state, rec.at = "running", self.clock()
                rec.worker_id, rec.lease_until = worker_id, lease_until
                claim = fenced_claim(rec.raw, job_id, uuid.uuid4().hex, worker_id, lease_until)
                rec.token = claim.token
                claims.append(claim)
        return claims

    def complete(self, claims: Sequence[Claim], how: str = "") -> None:
        with self._cond:
            for claim in claims:
                if rec := self._owned(claim):
                    job_id = split_token(claim)[0]
                    del self._recs[job_id]
                    self._cancels.pop(job_id, None)
                    self._ended(job_id, rec, how)
                    self._count(failed=False)

    def discard(self, claim: Claim) -> None:
        self.complete([claim], "discarded")

    def retry(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        with self._cond:
            if self._replace(claim, envelope, "retry", run_at) == "retry":  # (cancelled: not counted failed)
                self._count(failed=True)

    def reschedule(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        with self._cond:
            self._replace(claim, envelope, "scheduled", run_at)

    def kill(self, claim: Claim, envelope: Envelope | None, error: dict | None = None) -> None:
        with self._cond:
            if self._replace(claim, envelope, "dead", self.clock(), None if envelope is not None else error):
                self._count(failed=True)
                self._trim_dead()

    def release(self, claims: Sequence[Claim]) -> None:
        with self._cond:
            for claim in reversed(claims):  # each goes to the front: the last first
                rec = self._owned(claim)
                if rec is not None and not self._cancel_instead(split_token(claim)[0], rec):
                    self._become_ready(split_token(claim)[0], rec, front=True)

    def heartbeat(self, worker: WorkerInfo, claims: Sequence[Claim]) -> None:
        with self._cond:
            worker.heartbeat_at = self.clock()
            self._workers[worker.worker_id] = dataclasses.replace(worker, busy=list(worker.busy))
            lease_until = self.clock() + self.setting("LEASE_SECONDS")
            for claim in claims:
                rec = self._owned(claim)
                if rec is not None:
                    rec.lease_until = claim.lease_until = lease_until

    def unregister(self, worker_id: str) -> None:
        with self._cond:
            self._workers.pop(worker_id, None)

    def recover_expired(self) -> int:
        now, lease = self.clock(), self.setting("LEASE_SECONDS")
        with self._cond:
            expired = [(job_id, rec.token.split(":", 1)[0], rec.raw) for job_id, rec in self._recs.items()
                       if rec.state == "running" and rec.lease_until <= now]
            for worker_id in [w for w, info in self._workers.items() if info.heartbeat_at + lease < now]:
                del self._workers[worker_id]
        return recover_orphans(expired, now, self._orphan_move(now, expired_before=now))

    def abandon(self, claims: Sequence[Claim], reason: str = "") -> int:
        now = self.clock()
        with self._cond:
            held = [(*split_token(claim), rec.raw) for claim in claims if (rec := self._owned(claim)) is not None]
        return recover_orphans(held, now, self._orphan_move(now), reason)

    def _orphan_move(self, now: float, expired_before: float | None = None):
        """:data:`~.base.OrphanMove` for this store, fenced by the token (and the lease)."""
        def move(claim: Claim, fate: str, env: Envelope | None, error: dict | None) -> bool:
            with self._cond:
                rec = self._owned(claim)
                if rec is None or (expired_before is not None and rec.lease_until > expired_before):
                    return False
                if env is not None:
                    rec.raw, rec.queue, rec.priority = env.encode(), env.queue, env.priority
                if fate == "requeue":
                    if not self._cancel_instead(split_token(claim)[0], rec):
                        self._become_ready(split_token(claim)[0], rec, front=True)
                else:
                    self._cancels.pop(split_token(claim)[0], None)
                    rec.state, rec.at, rec.token, rec.worker_id, rec.error = "dead", now, None, None, error
                    self._ended(split_token(claim)[0], rec, "dead")
                    self._count(failed=True)
                return True
        return move

    def promote_due(self) -> int:
        with self._cond:
            return self._promote_locked()

    def _promote_locked(self) -> int:
        now = self.clock()
        due = sorted((r.at, i) for i, r in self._recs.items() if r.state in ("scheduled", "retry") and r.at <= now)
        for _, job_id in due:
            self._become_ready(job_id, self._recs[job_id])
        for key, blocked in list(self._blocked.items()):  # slots whose jobs left without an outcome
            rec = self._recs.get(blocked[0]) if blocked else None
            self._unblock(key, rec.slot[1] if rec is not None and rec.slot else 1)
        return len(due)

    # --- scheduler ------------------------------------------------------
    def claim_tick(self, name: str, tick_at: float) -> bool:
        with self._cond:
            if (name, tick_at) in self._ticks:
                return False
            self._ticks.add((name, tick_at))
            return True

    def cron_states(self) -> dict[str, dict]:
        with self._cond:
            return {name: dict(state) for name, state in self._cron.items()}

    def set_cron_state(self, name: str, state: dict) -> None:
        with self._cond:
            self._cron[name] = dict(state)

    def save_result(self, job_id: str, result: dict, ttl: float) -> None:
        self._results.save(job_id, result, ttl)

    def load_result(self, job_id: str) -> dict | None:
        return self._results.load(job_id)

    # --- inspection -----------------------------------------------------
    def counts(self) -> Counts:
        with self._cond:
            today = self._stats.get(dt.date.fromtimestamp(self.clock()).isoformat(), [0, 0])
            states = [r.state for r in self._recs.values()]
            return Counts(self._totals[0], self._totals[1], today[0], today[1], states.count("ready"),
                          states.count("scheduled"), states.count("retry"), states.count("dead"),
                          states.count("running"), states.count("blocked"), states.count("cancelled"),
                          states.count("waiting"))

    def queues(self) -> list[QueueInfo]:
        now = self.clock()
        with self._cond:
            names = set(self._ready) | self._paused | {r.queue for r in self._recs.values()}
            result = []
            for name in sorted(names):
                ready = [r for r in self._recs.values() if r.queue == name and r.state == "ready"]
                oldest = min((r.enqueued_at for r in ready), default=now)
                result.append(QueueInfo(name, len(ready), max(0.0, now - oldest), name in self._paused))
            return result

    def _record(self, job_id: str, rec: _Rec) -> JobRecord:
        return JobRecord(job_id, rec.state, rec.raw, decode_or_none(rec.raw), rec.at, rec.queue, rec.error,
                         rec.worker_id if rec.state == "running" else None)

    def jobs(self, state: str, *, queue: str | None = None, job: str | None = None,
             search: str | None = None, page: int = 1, per_page: int = 25) -> Page:
        with self._cond:
            rows = [self._record(i, r) for i, r in self._recs.items() if r.state == state
                    and (queue is None or r.queue == queue)]
        if job:
            rows = [r for r in rows if r.envelope and r.envelope.job == job]
        if search:
            needle = search.encode().lower()  # ASCII letters only, as every adapter
            rows = [r for r in rows if needle in r.job_id.encode() or needle in r.raw.lower()]
        if state in ("dead", "cancelled"):
            rows.sort(key=lambda r: -(r.at or 0))
        elif state in ("scheduled", "retry"):
            rows.sort(key=lambda r: r.at or 0)
        elif state in ("blocked", "waiting"):
            rows.sort(key=lambda r: self._recs[r.job_id].seq if r.job_id in self._recs else 0)
        elif state == "ready":
            rows.sort(key=lambda r: (-self._recs[r.job_id].priority, self._recs[r.job_id].seq)
                      if r.job_id in self._recs else (0, 0))
        start = (page - 1) * per_page
        return Page(rows[start:start + per_page], len(rows), page, per_page)

    def get(self, job_id: str) -> JobRecord | None:
        with self._cond:
            rec = self._recs.get(job_id)
            return self._record(job_id, rec) if rec else None

    def retry_now(self, job_ids: Iterable[str]) -> int:
        moved = 0
        with self._cond:
            for job_id in job_ids:
                rec = self._recs.get(job_id)
                if rec is not None and rec.state in ("scheduled", "retry", "dead", "cancelled"):
                    self._become_ready(job_id, rec)
                    moved += 1
        return moved

    def kill_now(self, job_ids: Iterable[str]) -> int:
        moved = 0
        with self._cond:
            for job_id in job_ids:
                rec = self._recs.get(job_id)
                if rec is not None and rec.state in ("scheduled", "retry"):
                    rec.state, rec.at = "dead", self.clock()
                    self._ended(job_id, rec, "dead")
                    moved += 1
            self._trim_dead()
        return moved

    def delete(self, job_ids: Iterable[str]) -> int:
        deleted = 0
        with self._cond:
            for job_id in job_ids:
                rec = self._recs.get(job_id)
                if rec is not None and rec.state != "running":
                    del self._recs[job_id]
                    self._ended(job_id, rec, "deleted")
                    deleted += 1
        return deleted

    def clear(self, queue: str) -> int:
        with self._cond:
            ids = [i for i, r in self._recs.items() if r.queue == queue and r.state == "ready"]
            self._ready.pop(queue, None)  # before the slots go: jobs they admit join the queue anew
            for job_id in ids:
                self._ended(job_id, self._recs.pop(job_id), "deleted")
        return len(ids)

    def take_rate(self, key: str, limit: int, period: float, member: str) -> float:
        return self._rates.take(key, limit, period)

    def rate_uses(self, limit: int = 1000) -> list[RateUse]:
        return self._rates.uses(limit)

    def concurrency_uses(self, limit: int = 1000) -> list[ConcurrencyUse]:
        with self._cond:
            uses = []
            for key in sorted(set(self._slots) | set(self._blocked)):
                holders = sorted(i for i in self._slots.get(key, ()) if (r := self._recs.get(i)) is not None
                                 and r.state in ("ready", "running"))
                blocked = [i for i in self._blocked.get(key, ()) if i in self._recs]
                some = self._recs.get((holders or blocked or [""])[0])
                if holders or blocked:
                    uses.append(ConcurrencyUse(key, some.slot[1] if some and some.slot else 0, holders, len(blocked)))
        return uses[:limit]

    def unique_holds(self, limit: int = 1000) -> list[UniqueHold]:
        now = self.clock()
        with self._cond:
            held = [UniqueHold(key, job_id, expires, until) for key, (job_id, expires, until) in self._unique.items()
                    if self._holder(key, now) == job_id]
        return sorted(held, key=lambda h: h.key)[:limit]

    def release_unique(self, key: str) -> bool:
        with self._cond:
            held = self._holder(key, self.clock()) is not None
            self._unique.pop(key, None)
            return held

    def pause(self, queue: str) -> None:
        with self._cond:
            self._paused.add(queue)

    def resume(self, queue: str) -> None:
        with self._cond:
            self._paused.discard(queue)
            self._cond.notify_all()

    def workers(self) -> list[WorkerInfo]:
        live = self.clock() - 2 * self.setting("LEASE_SECONDS")
        with self._cond:
            return [dataclasses.replace(w) for w in self._workers.values() if w.heartbeat_at >= live]

    def history(self, days: int = 30) -> list[tuple[str, int, int]]:
        today = dt.date.fromtimestamp(self.clock())
        with self._cond:
            result = []
            for n in range(days - 1, -1, -1):
                day = (today - dt.timedelta(days=n)).isoformat()
                processed, failed = self._stats.get(day, [0, 0])
                result.append((day, processed, failed))
            return result
