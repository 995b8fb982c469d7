"""A worker process' event loop: where its async jobs (``async def perform``) run.

One loop per worker process, in a thread of its own, started at the first async claim.
It runs up to ``capacity`` (``--async-concurrency``, default 100) jobs at once, beside the
process' job threads, which run the sync jobs. The fetch loop (process.py) claims for free
threads and free async slots separately (:meth:`AsyncRunner.room`), hands the async claims
here (:meth:`submit`) and counts them free again as they finish, exactly as it does for
its threads: the same ``_finish`` entries, acknowledged by its next fetch.

Promises, as for a sync job: a success is acknowledged by the next fetch, any other outcome
is reported through the adapter (from a small thread pool: the loop never waits on storage);
leases of async claims are renewed like the others (they are the process' claims); the claim
log names every running async job (one slot each, after the threads'), so a killed process'
running async jobs count a death and the others go back unchanged. A stop cancels nothing
at first: running coroutines get the shutdown timeout to finish; then :meth:`cancel_all`
cancels them and the process hands them back to their queues. A coroutine that blocks the
loop (``time.sleep``, a sync client) is reported by :class:`~djjobs.worker.loop_watch.LoopWatch`.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from .. import registry
from ..adapters.base import Claim
from ..execution import SUCCEEDED, Outcome
from ..execution_async import aexecute
from ..run_context import RunContext
from .loop_watch import LoopWatch
from .processor import CANCEL_CHECK_SECONDS, CancelProbe, rate_limited, report

if TYPE_CHECKING:
    from .process import WorkerProcess

logger = logging.getLogger("djjobs")
RECENT_SECONDS = 1.0  # async claims seen this recently: the fetch loop claims for every free async slot
REPORT_THREADS = 4  # threads reporting async jobs' outcomes (and asking storage about cancellations)
CLOSE_EVERY = 1.0  # how often at most the async ORM's thread checks its database connections


class AsyncRunner:
    def __init__(self, worker: "WorkerProcess", capacity: int, *, lag_warning: float, first_slot: int):
        self.worker, self.capacity = worker, capacity
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[asyncio.Task, Claim] = {}  # running (loop thread only)
        self._waiting: collections.deque[Claim] = collections.deque()  # claimed beyond the free slots
        self._lock = threading.Lock()  # guards _waiting (the fetch loop takes unstarted claims back)
        self._slots = list(range(first_slot + capacity - 1, first_slot - 1, -1))  # claim log slots, free
        self._pool = ThreadPoolExecutor(REPORT_THREADS, thread_name_prefix="djjobs-async-report")
        self.seen_at = 0.0
        self._closed_at = 0.0
        self.watch = LoopWatch(lag_warning, self._describe_running)

    # --- the fetch loop's side --------------------------------------------------
    def split(self, claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
        """(sync claims, async claims): a claim's registered class decides. A payload that did
        not decode, or names no registered class, goes to a thread (which sends it to the dead set)."""
        sync, asyn = [], []
        for claim in claims:
            env = claim.envelope
            cls = registry.lookup(env.job) if env is not None else None
            (asyn if cls is not None and cls.is_async else sync).append(claim)
        return sync, asyn

    def room(self, held: int) -> int:
        """How many more async claims to fetch, the process holding ``held``: every free slot
        while async jobs were claimed in the last RECENT_SECONDS (or run now), else none: a
        fetch cannot ask for async jobs only, and a sync job claimed for an async slot would
        wait for a thread (the promise is that a busy worker claims no job it has no thread
        for). The first async job is found by a fetch for a free thread; from then on the free
        slots count. (The fetch loop subtracts the sync claims waiting beyond its threads.)"""
        free = self.capacity - held
        if free <= 0 or not (held or time.monotonic() - self.seen_at < RECENT_SECONDS):
            return 0
        return free

    def submit(self, claims: list[Claim]) -> None:
        """Run these async claims (from the fetch loop): now in a free slot, or as one frees."""
        self.seen_at = time.monotonic()
        if self.loop is None:
            self._start()
        with self._lock:
            self._waiting.extend(claims)
        self.loop.call_soon_threadsafe(self._start_waiting)

    def unstarted(self) -> list[Claim]:
        """Take back the claims no slot has started yet (a stop: they go back to their queues at once)."""
        with self._lock:
            claims = list(self._waiting)
            self._waiting.clear()
        return claims

    def running(self) -> int:
        return len(self._tasks)

    def cancel_all(self, timeout: float) -> int:
        """Cancel every running coroutine (the shutdown timeout has passed) and wait up to
        ``timeout`` for them to end; returns how many were cancelled. Their claims stay the
        process' to hand back; a coroutine that ignores the cancellation is left running."""
        n = len(self._tasks)
        if self.loop is None or not n:
            return 0
        self.loop.call_soon_threadsafe(lambda: [task.cancel() for task in list(self._tasks)])
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return n

    # --- the loop thread ----------------------------------------------------------
    def _start(self) -> None:
        ready = threading.Event()
        thread = threading.Thread(target=self._loop_main, args=(ready,), name="djjobs-async-loop", daemon=True)
        thread.start()
        ready.wait()
        self.watch.start(self.loop)

    def _loop_main(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        ready.set()
        self.loop.run_forever()

    def _start_waiting(self) -> None:
        while self._slots:
            with self._lock:
                if not self._waiting:
                    return
                claim = self._waiting.popleft()
            slot = self._slots.pop()
            self._tasks[self.loop.create_task(self._run(claim, slot))] = claim

    async def _run(self, claim: Claim, slot: int) -> None:
        """Run one async job and carry out its outcome, as a job thread does (process.py ``_run``)."""
        worker, done, took, outcome, cancelled = self.worker, None, 0.0, None, False
        log, loop = worker.claim_log, self.loop
        try:
            job_class = registry.lookup(claim.envelope.job)
            if job_class.rate_limit is not None and await loop.run_in_executor(
                    self._pool, rate_limited, worker.adapter, claim):
                pass  # rescheduled before it started (djjobs/ratelimits.py)
            else:
                if log is not None:
                    log.running(slot, claim.key)
                outcome = await aexecute(claim.envelope, contain_exits=True, context=self._context(claim),
                                         timeout=job_class.timeout)
                took = outcome.duration
                if outcome.kind == SUCCEEDED:
                    done = claim
                    if log is not None:
                        log.finished(claim.key)
                else:
                    await loop.run_in_executor(self._pool, self._report, claim, outcome)
        except asyncio.CancelledError:  # the shutdown timeout passed: the process hands the claim back
            cancelled = True
        except Exception:
            logger.exception("Reporting the outcome of %s failed; its lease will recover it", claim.token)
        finally:
            if outcome is not None:
                outcome.release()
            if done is None and not cancelled:
                worker._sync([], [claim])
            self._tasks.pop(asyncio.current_task(), None)
            self._slots.append(slot)
            worker._finish(done, took, True)
            self._start_waiting()
            self._check_connections()

    def _report(self, claim: Claim, outcome: Outcome) -> None:
        from .process import _close_old_connections
        try:
            self.worker._report(claim, lambda: report(self.worker.adapter, claim, outcome), claim.envelope.describe())
        finally:
            _close_old_connections()

    def _context(self, claim: Claim) -> RunContext:
        """What the job may ask: ``self.cancelled`` (asked of storage from a thread, never
        on the loop) and whether the worker is stopping. No progress: ``step`` is refused on
        async jobs (djjobs/job.py)."""
        return RunContext(cancelled=ThreadedCancelProbe(self.worker.adapter, claim.envelope.job_id, self._pool),
                          stopping=self.worker._stopping_now)

    def _check_connections(self) -> None:
        """Django's connection check for the thread its async ORM uses (thread-sensitive
        ``sync_to_async``), as after a request, at most every CLOSE_EVERY seconds."""
        now = time.monotonic()
        if now - self._closed_at >= CLOSE_EVERY:
            from .process import _close_old_connections
            self._closed_at = now
            self.loop.create_task(sync_to_async(_close_old_connections, thread_sensitive=True)())

    def _describe_running(self, task: asyncio.Task | None) -> str:
        """The job a blocking task runs (or, unknown, the jobs the loop runs), for LoopWatch."""
        claim = self._tasks.get(task) if task is not None else None
        if claim is not None:
            return claim.envelope.describe()
        names = sorted({c.envelope.job for c in list(self._tasks.values())})
        return "one of " + ", ".join(names) if names else "no job (djjobs' own code?)"


class ThreadedCancelProbe(CancelProbe):
    """:class:`CancelProbe` for a job on the event loop: the question goes to storage from a
    thread, and ``self.cancelled`` reads the last answer (true within about
    CANCEL_CHECK_SECONDS of the request, plus the round trip), never blocking the loop."""

    __slots__ = ("pool", "asking")

    def __init__(self, adapter, job_id: str, pool: ThreadPoolExecutor):
        super().__init__(adapter, job_id)
        self.pool, self.asking = pool, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.seen and not self.asking and now - self.asked_at >= CANCEL_CHECK_SECONDS:
            self.asked_at, self.asking = now, True
            self.pool.submit(self._ask)
        return self.seen

    def _ask(self) -> None:
        from .process import _close_old_connections
        try:
            self.asked_at = -CANCEL_CHECK_SECONDS  # the base class asks now
            CancelProbe.__call__(self)
        finally:
            self.asking = False
            _close_old_connections()
