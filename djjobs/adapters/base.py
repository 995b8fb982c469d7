"""The adapter contract: the state transitions every storage implements.

A job is in exactly one state at a time:

    ready      in its queue, waiting for a worker
    scheduled  waiting for its run_at (``set(wait=...)``, ``retry_job``)
    retry      waiting for its run_at after a failure
    running    claimed by a worker under a lease
    blocked    ready but over its concurrency limit: waits for a slot (not fetched)
    waiting    waits for its prerequisites (``set(after=...)``; not fetched, not promoted)
    dead       failed for good, kept for inspection (capped)
    cancelled  cancelled (:meth:`Adapter.cancel`): never runs (again); kept for inspection,
               capped as the dead set is

and moves between them only through the methods below. Unless a method
says otherwise it is atomic: a crash in the middle leaves the job in its old
state or its new one, never in both or neither.

Delivery guarantee (every durable adapter): **at-least-once**. A job claimed
by a worker that dies is handed out again once its lease expires
(:meth:`recover_expired`). In normal operation (no worker deaths) each job
runs exactly once.

Ordering: within one queue, higher ``priority`` first, then FIFO by enqueue
order; scheduled and retry jobs join the back of their queue when due.
A job released by a stopping worker or recovered after a lease goes to the
front. Across queues, the order a worker passes to :meth:`fetch` decides.

Time: every time decision (is a job due, has a lease expired) uses
``self.clock()`` (injectable for tests), never the storage server's clock.

Claims are fenced: ``complete``/``retry``/``reschedule``/``kill``/``release``
on a claim whose lease expired and whose job was recovered (and perhaps
claimed again) do nothing, so a slow worker cannot ack someone else's run.

Unique jobs (:mod:`djjobs.uniqueness`, the declaration in ``envelope.meta["unique"]``):
``enqueue``/``enqueue_many`` check the key and store the job in one atomic step. A key is
held by its job while the job is ready, scheduled, retrying or running (``until`` "start":
not once claimed), and until ``expires`` at most; whether it is held is decided from the
holder's state at each check, so no outcome can leave a key stuck. Conflict "replace"
deletes a holder that is not running and stores the new job (a running holder keeps
running, and the new job takes the key); otherwise the new job is not stored and the
adapter returns the holder's id.

Concurrency limits (:mod:`djjobs.concurrency`, ``envelope.meta["concurrency"]``): a job
of a limited key takes a slot in the step that makes it ready (enqueue, promotion,
``retry_now``) or else is stored ``blocked``, behind the key's other blocked jobs (FIFO).
It keeps the slot while ready or running (``release`` and lease recovery's requeue keep
it). The step that stores its outcome (``complete``, ``retry``, ``reschedule``, ``kill``,
lease recovery's dead set, ``delete``, ``clear``) lets the slot go and makes the key's
oldest blocked jobs ready, as many as slots are free. Slots are job ids: a job lets go of
its own slot only, at most once; a slot whose job is not ready or running counts as free;
``promote_due`` also admits blocked jobs whose slots freed without an outcome (a job gone
by other means), so a blocked job can never wait for a slot nobody holds.

Cancellation (:mod:`djjobs.cancellation`): :meth:`Adapter.cancel` moves a ready, scheduled,
retrying or blocked job to ``cancelled`` in one atomic step (its uniqueness key and slot let
go as for any end), so no worker can claim it afterwards. A running job gets a cancel
request instead, which its run reads through :meth:`Adapter.cancel_requested`; the request
is honoured by the step that stores the run's outcome: a run that stops for it
(:meth:`Adapter.cancel_run`), retries, reschedules, is released or recovered after a
worker death ends ``cancelled`` instead; one that succeeds or dies ends so.

Prerequisites (:mod:`djjobs.prerequisites`, ``envelope.meta["after"]``): ``enqueue`` stores
such a job ``waiting`` while a prerequisite has not ended, registering it with each in the
same atomic step (a prerequisite ending meanwhile is either seen ended or sees the job). The
step that ends a job (``complete``: success; ``discard``, ``kill``, lease recovery's dead set,
``cancel``/``cancel_run``, ``kill_now``, ``delete``, ``clear``: badly) settles the jobs
waiting for it in that same step: each counts it once, and the one whose last prerequisite
it was becomes ready (or scheduled, its run time ahead); one whose prerequisite ended badly
goes to the dead set with a PrerequisiteFailed error beside its payload, is forgotten, or
goes on, as its policy says, and ends badly in turn for its own dependants.

Batches (:mod:`djjobs.batches`, ``envelope.meta["batch"]``; the counting rules in
:mod:`djjobs.batch_status`): :meth:`Adapter.open_batch` stores an open batch with its
callbacks' envelopes. ``enqueue`` stores a job of a batch and counts it pending in the same
atomic step, or refuses the whole call with BatchFinished when the batch is complete or
unknown. Every step that ends a job for good (the same steps that settle prerequisites, and
their cascade: a dependant sent to the dead set or discarded is settled too) settles it in its
batch in that step: one pending less, one more succeeded, dead, discarded (deleted counts so)
or cancelled, and in that same step stores ``on_death`` at the batch's first dead job and
``on_complete`` (then ``on_success``, when nothing failed) when a closed batch has nothing
pending; :meth:`Adapter.close_batch` does the latter for a batch with nothing pending.
Each callback is stored at most once (its envelope, with the status as its argument and now
as its enqueue time, ready in its queue). :meth:`Adapter.repair_batches` settles, as
deleted, jobs counted pending that storage no longer has, and completes closed batches
with nothing pending that are not complete.
Progress (:mod:`djjobs.continuations`, ``envelope.meta["progress"]``): a running job's run
stores its progress with :meth:`Adapter.save_progress`, which replaces the payload of the job
it holds, fenced by the lease token, and changes nothing else (not its state, lease, place or
counts). A run interrupted by a stopping worker saves its progress so, then is released; lease
recovery, ``release`` and every later step start from the payload last saved.

Capabilities an adapter lacks are declared as flags and refused with a clear
error, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Sequence

import orjson

from .. import conf
from ..batch_status import BatchStatus
from ..envelope import Envelope
from ..errors import BatchFinished, EnqueueError, PayloadError, SerializationError, UnsupportedFeature
from ..concurrency import slot_of
from ..uniqueness import UniqueLock, lock_of

STATES = ("ready", "scheduled", "retry", "running", "blocked", "waiting", "dead", "cancelled")
#: the states from which :meth:`Adapter.cancel` ends a job at once
CANCELLABLE = ("ready", "scheduled", "retry", "blocked", "waiting")
logger = logging.getLogger("djjobs")


@dataclasses.dataclass
class Claim:
    """A job handed to a worker: the envelope, the stored bytes, and the
    adapter's handle on the in-flight record (``token``).

    ``token`` must be a str or int: the supervisor renews leases from another
    process and rebuilds claims from (token, raw, worker_id) alone, so
    ``heartbeat`` may rely on nothing else."""
    envelope: Envelope | None       # None when the stored bytes do not decode
    raw: bytes
    token: Any
    worker_id: str
    lease_until: float
    error: Exception | None = None  # why envelope is None

    @property
    def key(self) -> str:
        return str(self.token)


@dataclasses.dataclass
class JobRecord:
    """A job as the admin and ``jobs_status`` see it."""
    job_id: str
    state: str
    raw: bytes
    envelope: Envelope | None
    at: float | None = None         # run_at (scheduled/retry), claimed at (running), failed at (dead)
    queue: str = ""
    #: the failure stored beside the payload when the payload cannot carry it (bytes that do
    #: not decode, or an envelope the encoder cannot write back): kept byte-exact, with this
    error: dict | None = None
    #: the worker holding a running job's lease, where storage records it per job (memory and
    #: database adapters); None otherwise (the Redis adapter: see the workers' ``busy`` lists)
    worker_id: str | None = None


@dataclasses.dataclass
class QueueInfo:
    name: str
    size: int
    latency: float                  # seconds since the oldest ready job was enqueued (0 when empty)
    paused: bool = False


@dataclasses.dataclass
class Counts:
    processed: int = 0              # all time
    failed: int = 0
    processed_today: int = 0
    failed_today: int = 0
    enqueued: int = 0               # ready, all queues
    scheduled: int = 0
    retry: int = 0
    dead: int = 0
    busy: int = 0                   # running
    blocked: int = 0                # waiting for a concurrency slot
    cancelled: int = 0
    waiting: int = 0                # waiting for prerequisites


@dataclasses.dataclass
class WorkerInfo:
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    heartbeat_at: float = 0.0
    busy: list[dict] = dataclasses.field(default_factory=list)  # {"job_id", "job", "queue", "started_at"}


@dataclasses.dataclass
class UniqueHold:
    """A uniqueness key held now (the admin's Limits page)."""
    key: str
    job_id: str
    expires: float
    until: str = "finish"


@dataclasses.dataclass
class RateUse:
    """A rate-limit key and its use now (the admin's Limits page)."""
    key: str
    limit: int
    period: float
    used: int                       # starts counted in the last ``period`` seconds


@dataclasses.dataclass
class ConcurrencyUse:
    """A concurrency key in use (the admin's Limits page)."""
    key: str
    limit: int
    holders: list[str]              # job ids holding its slots (ready or running)
    blocked: int                    # jobs waiting for a slot


@dataclasses.dataclass
class Page:
    items: list[JobRecord]
    total: int
    page: int
    per_page: int


@dataclasses.dataclass
class BatchPage:
    items: list[BatchStatus]
    total: int
    page: int
    per_page: int


class Adapter(ABC):
    """Base of every adapter. Producers call ``enqueue``/``enqueue_many``; the
    worker calls the worker methods; the admin calls the inspection methods."""

    name = "base"
    #: can store a future ``run_at`` (scheduled and retry sets)
    supports_schedule = True
    #: honours ``priority`` within a queue
    supports_priority = True
    #: jobs can be fetched by ``runjobs`` (False: the adapter runs jobs itself)
    supports_fetch = True
    #: writes the job inside the caller's database transaction (no on_commit deferral)
    transactional_enqueue = False
    #: survives a process restart
    durable = False

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})
        self.clock = time.time

    def setting(self, name: str) -> Any:
        """An option passed to the adapter, else the DJJOBS setting."""
        return self.options.get(name, conf.get(name))

    # --- producer -------------------------------------------------------
    @abstractmethod
    def enqueue(self, envelope: Envelope) -> str | None:
        """Store one job: ready, or scheduled when ``run_at`` is in the future.
        Raises EnqueueError (or a subclass) when it cannot. Returns None, or for a unique
        job not stored because its key is held, the holder's job id."""

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        """Store many jobs, in one round trip where the storage allows. Jobs with prerequisites
        are stored after the others (one listed in the same call is seen stored).
        All or nothing where the storage allows; documented per adapter. Returns
        {job id: holder's job id} for the unique jobs not stored (their key is held)."""
        duplicates = {}
        for env in with_prerequisites_last(envelopes):
            holder = self.enqueue(env)
            if holder:
                duplicates[env.job_id] = holder
        return duplicates

    def enqueue_raw(self, raw: bytes, queue: str) -> None:
        """Store bytes as they are, as a ready job of ``queue`` (tests and repair
        tools; no validation, so a poison payload can be reproduced)."""
        raise NotImplementedError

    def encode(self, envelope: Envelope, limit: int | None = None) -> bytes:
        """Encode and enforce the payload limit and capabilities (shared by all adapters)."""
        if envelope.run_at is not None and not self.supports_schedule and envelope.run_at > self.clock():
            raise UnsupportedFeature(f"The {self.name} adapter cannot schedule jobs ({envelope.describe()} "
                                     "has a run_at); use the redis or database adapter.")
        try:
            data = envelope.encode()
        except (orjson.JSONEncodeError, TypeError) as exc:
            hint = (" Arguments nested deeper than about 250 levels cannot be stored; pass a flatter structure."
                    if "Recursion limit" in str(exc) else "")
            raise SerializationError(f"{envelope.describe()}: its arguments cannot be encoded as JSON ({exc}).{hint}"
                                     ) from None
        limit = self.setting("MAX_PAYLOAD_BYTES") if limit is None else limit
        if len(data) > limit:
            raise EnqueueError(f"{envelope.describe()}: payload is {len(data):,} bytes, over the "
                               f"{limit:,}-byte limit (DJJOBS['MAX_PAYLOAD_BYTES']). Pass ids or model "
                               "instances (stored by reference) instead of large data.")
        return data

    def is_due(self, envelope: Envelope, now: float | None = None) -> bool:
        return envelope.run_at is None or envelope.run_at <= (now if now is not None else self.clock())

    # --- worker ---------------------------------------------------------
    def fetch(self, queues: Sequence[str], limit: int, timeout: float, worker_id: str, *,
              complete: Sequence[Claim] = ()) -> list[Claim]:
        """Claim up to ``limit`` ready jobs from ``queues`` (first non-empty queue first,
        skipping paused ones), each under a lease of ``LEASE_SECONDS`` owned by
        ``worker_id``. Blocks up to ``timeout`` seconds when nothing is ready; returns
        ``[]`` then. A payload that does not decode is still claimed (``envelope=None``)
        so the worker can move it to the dead set.

        ``complete``: finished claims to acknowledge first, exactly as :meth:`complete`
        does (the worker's way of saving a round trip per batch). When ``fetch`` raises,
        they may or may not be acknowledged; acknowledging them again is harmless."""
        raise UnsupportedFeature(f"The {self.name} adapter runs jobs itself; runjobs cannot fetch from it.")

    def stop_waiting(self, worker_id: str) -> list[Claim]:
        """The worker stops fetching (quiet or shutdown): end anything ``fetch`` left in place for
        ``worker_id`` between calls, and return jobs claimed for it that it has not
        received yet (the Redis adapter's hand-off), so they can be released at once
        rather than wait for their lease. Adapters without such state return []."""
        return []

    def complete(self, claims: Sequence[Claim]) -> None:
        """Succeeded or discarded: forget the jobs, count them processed."""
        raise NotImplementedError

    def discard(self, claim: Claim) -> None:
        """Discarded (``discard_on``): forgotten and counted processed as :meth:`complete`
        does, but an end gone badly for the jobs waiting for it (prerequisites)."""
        raise NotImplementedError

    def retry(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        """Failed, to run again at ``run_at``: move to the retry set with ``envelope``
        (executions and error updated). Counts as failed."""
        raise NotImplementedError

    def reschedule(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        """``retry_job()``: move to the scheduled set, not a failure."""
        raise NotImplementedError

    def kill(self, claim: Claim, envelope: Envelope | None, error: dict | None = None) -> None:
        """Failed for good: move to the dead set (``envelope`` carries the error). With
        ``envelope`` None the stored bytes stay as they were, byte-exact (a payload that does
        not decode, or cannot be encoded again), and ``error`` is stored beside them
        (:attr:`JobRecord.error`). Counts as failed."""
        raise NotImplementedError

    def release(self, claims: Sequence[Claim]) -> None:
        """Graceful hand-back (worker stopping): back to the front of their queues,
        unchanged, in the order given (the first claim runs first again)."""
        raise NotImplementedError

    def heartbeat(self, worker: WorkerInfo, claims: Sequence[Claim]) -> None:
        """Register/refresh the worker and extend the leases of its ``claims``."""
        raise NotImplementedError

    def unregister(self, worker_id: str) -> None:
        """Remove a stopping worker from the registry."""
        raise NotImplementedError

    def recover_expired(self) -> int:
        """Hand back jobs whose lease expired (their worker died) to the front of their
        queues, ``deaths`` + 1 — or to the dead set when :func:`orphan_fate` says so.
        Returns how many. Safe to call from every worker concurrently. A job's payload that
        cannot be decoded or encoded again goes to the dead set as it is, with the error
        beside it; it never stops the recovery of the others.

        Nothing tells lease recovery whether the job had started, so each job counts a
        death; when the dead worker's supervisor is alive, it settles the claims first
        (:meth:`abandon` the running ones, ``complete`` the finished ones, ``release``
        the others) and lease recovery finds nothing of that worker."""
        raise NotImplementedError

    def abandon(self, claims: Sequence[Claim], reason: str = "") -> int:
        """The worker holding ``claims`` died while running them (its supervisor saw it
        exit): each gets a death at once, exactly as :meth:`recover_expired` gives one when
        the lease expires (front of its queue with ``deaths`` + 1, or the dead set), fenced
        by the lease token: a claim finished or recovered meanwhile is left alone.
        ``reason`` says how the worker died, for the stored error. Returns how many moved."""
        raise NotImplementedError

    def promote_due(self) -> int:
        """Move due scheduled and retry jobs to their queues; each once, however many
        callers race. Returns how many."""
        raise NotImplementedError

    # --- cancellation (djjobs/cancellation.py) ----------------------------------
    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Cancel jobs: each ready, scheduled, retrying or blocked one becomes ``cancelled``
        (one atomic step per job: a worker either claimed it before, or never will); each
        running one gets a cancel request. Returns {job id: "cancelled" or "cancelling"} for
        those; ids finished, dead, cancelled already or unknown are left out."""
        raise UnsupportedFeature(f"The {self.name} adapter cannot cancel jobs; use the redis or database adapter.")

    def cancel_requested(self, job_id: str) -> bool:
        """Whether the running job ``job_id`` has a cancel request (its run asks, throttled)."""
        return False

    def cancel_run(self, claim: Claim, envelope: Envelope) -> None:
        """The run stopped for a cancel request (it raised ``JobCancelled``): ``cancelled``
        with ``envelope``, fenced by the lease token; counts neither processed nor failed."""
        raise NotImplementedError

    # --- batches (djjobs/batches.py) ---------------------------------------------
    def open_batch(self, status: BatchStatus, callbacks: dict[str, Envelope]) -> None:
        """Store a new, open batch (``status``: id, description, created time, properties)
        and the envelopes of its callbacks by event ("complete", "success", "death"),
        complete but for their argument and enqueue time."""
        raise UnsupportedFeature(f"The {self.name} adapter cannot keep batches; use the redis, database, async or "
                                 "test adapter.")

    def close_batch(self, batch_id: str) -> None:
        """The batch's ``with`` block exited: from now on it completes when nothing is
        pending, at once if nothing is. Closing twice, or an unknown batch, does nothing."""
        raise NotImplementedError

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        """The batch's counts now, or None (never opened, or pruned after completing)."""
        return None

    def batches(self, *, page: int = 1, per_page: int = 25) -> BatchPage:
        """One page of batches, newest first."""
        return BatchPage([], 0, page, per_page)

    def batch_failures(self, batch_id: str, limit: int = 100) -> list[str]:
        """Ids of the batch's jobs that ended dead or cancelled and are still stored (newest
        first, at most ``limit``)."""
        return []

    def repair_batches(self) -> int:
        """Settle jobs counted pending that storage no longer has (as deleted), and complete
        closed batches with nothing pending. Returns how many batches it changed."""
        return 0

    # --- progress (djjobs/continuations.py) -------------------------------------
    def save_progress(self, claim: Claim, envelope: Envelope) -> bool:
        """Replace the stored payload of the running job ``claim`` holds with ``envelope`` (its
        progress), fenced by the lease token: one atomic step, nothing else about the job
        changes. Returns False, storing nothing, when the claim no longer holds the job (its
        lease was recovered, or its outcome stored)."""
        raise NotImplementedError

    # --- scheduler ------------------------------------------------------
    def claim_tick(self, name: str, tick_at: float) -> bool:
        """True exactly once per (name, tick_at), whoever asks, for cron."""
        raise NotImplementedError

    def cron_states(self) -> dict[str, dict]:
        """Every cron entry's stored state: ``last_tick``, ``last_enqueued_at``,
        ``last_job_id``, ``last_outcome`` (for catch-up and the admin)."""
        raise NotImplementedError

    def set_cron_state(self, name: str, state: dict) -> None:
        """Replace one entry's state (a JSON-able dict)."""
        raise NotImplementedError

    # --- results (django.tasks) ----------------------------------------------
    def save_result(self, job_id: str, result: dict, ttl: float) -> None:
        """Store a task's result record (JSON-able dict), replacing any, kept ``ttl`` seconds."""
        raise NotImplementedError

    def load_result(self, job_id: str) -> dict | None:
        """The stored result record, or None (never stored, or expired)."""
        raise NotImplementedError

    # --- inspection (admin, jobs_status) -----------------------------------
    def counts(self) -> Counts:
        raise NotImplementedError

    def queues(self) -> list[QueueInfo]:
        raise NotImplementedError

    def jobs(self, state: str, *, queue: str | None = None, job: str | None = None,
             search: str | None = None, page: int = 1, per_page: int = 25) -> Page:
        """One page of jobs in ``state`` (not ``running``), newest first for dead and cancelled,
        soonest first for scheduled/retry, fetch order for ready, oldest first for waiting."""
        raise NotImplementedError

    def get(self, job_id: str) -> JobRecord | None:
        """The job in one of :data:`STATES`, or None (finished, deleted, or never stored)."""
        raise NotImplementedError

    def get_finished(self, job_id: str) -> JobRecord | None:
        """A job that ended succeeded or discarded, if storage still keeps it: a record in
        state ``finished`` (``at``: when it ended), else None. Only the database adapter keeps
        such jobs (``FINISHED_RETENTION_SECONDS``); it does not tell the two ends apart."""
        return None

    def retry_now(self, job_ids: Iterable[str]) -> int:
        """Scheduled, retry, dead or cancelled jobs -> their queues now. Returns how many moved."""
        raise NotImplementedError

    def kill_now(self, job_ids: Iterable[str]) -> int:
        """Scheduled or retry jobs -> dead set."""
        raise NotImplementedError

    def delete(self, job_ids: Iterable[str]) -> int:
        """Delete jobs that are not running. Returns how many."""
        raise NotImplementedError

    def clear(self, queue: str) -> int:
        """Delete every ready job of ``queue``."""
        raise NotImplementedError

    def pause(self, queue: str) -> None:
        """Workers stop fetching from ``queue`` (enqueue still works)."""
        raise NotImplementedError

    def resume(self, queue: str) -> None:
        raise NotImplementedError

    # --- rate limits (djjobs/ratelimits.py) ------------------------------------
    def take_rate(self, key: str, limit: int, period: float, member: str) -> float:
        """Count one start under ``key`` if fewer than ``limit`` were counted in the last
        ``period`` seconds, and return 0; else count nothing and return the seconds until
        one may be (an exact sliding window: no ``period``-long window ever holds more than
        ``limit`` starts). Atomic across processes. ``member`` is unique per call."""
        raise UnsupportedFeature(f"The {self.name} adapter has no rate limits; use the redis or database adapter.")

    def rate_uses(self, limit: int = 1000) -> list[RateUse]:
        """Rate-limit keys with starts in their current window, up to ``limit``."""
        return []

    def concurrency_uses(self, limit: int = 1000) -> list[ConcurrencyUse]:
        """Concurrency keys with a slot held or a job blocked, up to ``limit``."""
        return []

    def unique_holds(self, limit: int = 1000) -> list[UniqueHold]:
        """Uniqueness keys held now (by a job in a state that holds them), up to ``limit``."""
        return []

    def release_unique(self, key: str) -> bool:
        """Free ``key`` by hand (the admin): the next enqueue with it is stored, whatever its
        holder's state. Returns whether the key was held."""
        return False

    def workers(self) -> list[WorkerInfo]:
        """Registered workers with a heartbeat in the last two leases (one killed with all
        the others leaves an entry no poller removes)."""
        raise NotImplementedError

    def history(self, days: int = 30) -> list[tuple[str, int, int]]:
        """(ISO date, processed, failed) for the last ``days`` days, oldest first."""
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------
    def check(self) -> list[str]:
        """Problems with this adapter's configuration (system check errors, E005)."""
        return []

    def advice(self) -> list[tuple[str, str]]:
        """(message, hint) for settings that work but invite trouble (system check warnings)."""
        return []

    def close(self) -> None:
        """Release connections and threads."""


def batch_of(envelope: Envelope | None) -> str | None:
    """The id of the batch a job belongs to, if any."""
    return envelope.meta.get("batch") if envelope is not None and envelope.meta else None


def fired(template: Envelope, status: dict, now: float) -> Envelope:
    """A batch callback's envelope as stored when it fires (:meth:`Adapter.open_batch`)."""
    return template.copy(args=[status, *template.args[1:]], enqueued_at=now)


def batch_refused(batch_id: str, why: str = "complete or unknown") -> "BatchFinished":
    return BatchFinished(f"Batch {batch_id} is {why}: no job can join it any more (it completed, or was never "
                         "opened, or was pruned BATCH_RETENTION_SECONDS after completing). Nothing of this enqueue "
                         "was stored; open a new Batch.", batch_id=batch_id)


def with_prerequisites_last(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """``envelopes`` in their order, those with prerequisites after the others (enqueue_many)."""
    return sorted(envelopes, key=lambda env: bool(env.meta) and "after" in env.meta)


def unique_lock(envelope: Envelope | None) -> UniqueLock | None:
    """The uniqueness declaration of a job, or None (not unique, or not decodable)."""
    return lock_of(envelope.meta) if envelope is not None and envelope.meta else None


def concurrency_slot(envelope: Envelope | None) -> tuple[str, int] | None:
    """(key, limit) of a concurrency-limited job, or None."""
    return slot_of(envelope.meta) if envelope is not None and envelope.meta else None


def decode_or_none(raw: bytes) -> Envelope | None:
    """The envelope in stored bytes, or None when they do not decode (a poison payload)."""
    return decode(raw)[0]


def decode(raw: bytes) -> tuple[Envelope | None, PayloadError | None]:
    """(envelope, None), or (None, the PayloadError saying why the bytes do not decode)."""
    try:
        return Envelope.decode(raw), None
    except PayloadError as exc:
        return None, exc


def fenced_claim(raw: bytes, job_id: str, token: str, worker_id: str, lease_until: float) -> Claim:
    """A claim whose token is ``<lease token>:<job id>`` (the durable adapters' format)."""
    env, error = decode(raw)
    return Claim(env, raw, f"{token}:{job_id}", worker_id, lease_until, error)


def split_token(claim: Claim) -> tuple[str, str]:
    """(job id, lease token) of a claim made by :func:`fenced_claim`."""
    token, job_id = claim.token.split(":", 1)
    return job_id, token


def encodes(envelope: Envelope) -> Exception | None:
    """None if ``envelope`` can be stored again, else why not: orjson reads JSON nested up
    to 1,024 levels but writes only 254, so a payload another program wrote (or one
    from before arguments were checked) can decode and still not encode."""
    try:
        envelope.encode()
        return None
    except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
        return exc


def stored_error(exc: BaseException, what: str, *, at: float) -> dict:
    """The error stored beside a payload kept as it was (see :attr:`JobRecord.error`)."""
    return {"class": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": f"{what}: {exc}"[:2000],
            "traceback": "", "failed_at": at}


def orphan_fate(envelope: Envelope, max_deaths: int) -> str:
    """What happens to a job whose worker died: "requeue" or "dead".

    ``envelope.deaths`` already counts this death. A class with
    ``on_worker_death = "fail"`` goes to the dead set at once; any job that has
    taken down ``max_deaths`` workers is a poison pill and goes there too.
    """
    from .. import registry
    from ..errors import UnknownJobError
    try:
        policy = registry.resolve(envelope.job).on_worker_death
    except UnknownJobError:
        policy = "retry"
    return "dead" if policy == "fail" or envelope.deaths >= max_deaths else "requeue"


#: ``move(claim, fate, envelope, error)``: moves one orphan to its queue's front (``fate``
#: "requeue", with ``envelope`` as its new payload) or to the dead set (``envelope`` None:
#: the stored bytes kept, ``error`` beside them), fenced; returns whether it did.
OrphanMove = Callable[[Claim, str, "Envelope | None", "dict | None"], bool]


def recover_orphans(orphans: Iterable[tuple[str, str, bytes]], now: float, move: OrphanMove,
                    reason: str = "") -> int:
    """Lease recovery's and :meth:`Adapter.abandon`'s common part, for adapters that read
    the orphans first and then move each job in its own atomic step: ``orphans`` is (job
    id, lease token, payload); ``move`` is fenced by the token (and, for lease recovery, by
    the lease still being expired: a renewal that lands in between wins). One job that
    cannot be moved is logged and skipped: it never stops the others. Sends ``job_failed``
    for the ones moved to the dead set. Returns how many moved."""
    recovered, dead = 0, []
    for job_id, token, raw in orphans:
        try:
            fate, env, error = orphan_outcome(raw, now, reason)
            if move(Claim(env, raw, f"{token}:{job_id}", "", 0), fate, env, error):
                recovered += 1
                if fate == "dead":
                    dead.append(env)
        except Exception:
            logger.exception("Recovering job %s from a dead worker failed; the next pass tries again", job_id)
    announce_dead(dead)
    return recovered


def orphan_outcome(raw: bytes, now: float, reason: str = "") -> tuple[str, Envelope | None, dict | None]:
    """(fate, envelope to store or None to keep ``raw``, error stored beside it) for a job
    whose worker died. A payload that does not decode or cannot be encoded again goes to
    the dead set byte-exact, with the reason beside it."""
    env, decode_error = decode(raw)
    if env is None:
        return "dead", None, stored_error(decode_error, "Its worker died, and its payload does not decode", at=now)
    fate, new = orphan_envelope(env, now, reason)
    problem = encodes(new)
    if problem is not None:
        return "dead", None, stored_error(problem, "Its worker died, and its payload cannot be stored again "
                                          "(kept as it was)", at=now)
    return fate, new, None


def announce_dead(envelopes: Iterable[Envelope | None]) -> None:
    """Send ``job_failed`` for jobs that lease recovery moved to the dead set (a poison
    pill, or ``on_worker_death = "fail"``): they failed for good like any dead job, and
    receivers (alerts, django.tasks results) must hear of it. Outside any adapter lock."""
    from .. import registry, signals
    from ..errors import WorkerDied
    if not signals.job_failed.receivers:
        return
    for env in envelopes:
        if env is not None:
            signals.job_failed.send_robust(sender=registry.lookup(env.job), job=None, envelope=env,
                                           exception=WorkerDied((env.error or {}).get("message", "")))


def orphan_envelope(envelope: Envelope, now: float, reason: str = "") -> tuple[str, Envelope]:
    """The envelope to store for a job whose worker died, and where it goes."""
    env = envelope.copy(deaths=envelope.deaths + 1, executions=envelope.executions + 1)
    fate = orphan_fate(env, conf.get("MAX_WORKER_DEATHS"))
    poison = fate == "dead" and env.deaths >= conf.get("MAX_WORKER_DEATHS")
    why = (f"it was running when its worker died {env.deaths} times (poison pill)" if poison
           else "its worker died while running it")
    env.error = {"class": "djjobs.errors.WorkerDied",
                 "message": f"{'Worker died' if reason else 'Lease expired'}: {why}{f'; {reason}' if reason else ''}.",
                 "traceback": "", "failed_at": now}
    return fate, env
