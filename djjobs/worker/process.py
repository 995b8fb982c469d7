"""One worker process: the fetch loop, its job threads and its poller.

Started by the supervisor (``runjobs``), which renews this process' leases:
a job that holds the GIL here cannot stall the renewal. This process tells
the supervisor which claims it holds through a pipe (one JSON line per change).

Promises: a job is claimed for a free thread, or, while this process drains a
busy queue, at most ``PREFETCH_SECONDS`` of work ahead (see ``_capacity``), so a
claimed job waits in this process no longer than that. On SIGTERM no new job is
fetched, claimed jobs that have not started go back to the front of their queues
at once, running jobs get ``shutdown_timeout`` seconds to finish, and the rest are
released to the front of their queues before the process exits 0. SIGTSTP makes the process quiet (no new fetches).
Stopping or quiet, a running continuation is interrupted at its next checkpoint and goes back
to its queue with its progress (djjobs/continuations.py).
Async jobs (``async def perform``) run on the process' event loop (async_runner.py), up to
``async_concurrency`` at once: claimed for free async slots beside free threads, acknowledged
and stopped the same way (running coroutines are cancelled and handed back once the
shutdown timeout has passed).
A SIGINT after the first stop signal exits at once (the leases recover the jobs). A
process whose supervisor is gone (killed with SIGKILL) notices at once (its pipe to the
supervisor breaks), stops the same graceful way, and renews its own claims' leases
meanwhile, as the supervisor did, until its jobs end and it exits.
"""
from __future__ import annotations

import collections
import logging
import queue
import os
import random
import signal
import socket
import threading
import time
import uuid
from typing import IO

import orjson
from django.db import close_old_connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from .. import registry
from ..adapters import get_adapter
from ..adapters.base import Adapter, Claim
from ..execution import SUCCEEDED, Outcome, execute
from ..errors import JobTimeout
from .async_runner import AsyncRunner
from .claimlog import ClaimLog
from .orphans import OrphanWatch, _busy
from .processor import process, rate_limited, report, run_context
from .queues import QueueOrder
from .timeouts import Watchdog

logger = logging.getLogger("djjobs")
GATHER_SECONDS = 0.001
TELL_SECONDS = 0.5  # at most this long (and an eighth of the lease) before the supervisor hears of a claim
BATCH_REPAIR_EVERY = 10  # the poller runs Adapter.repair_batches every tenth pass (it finds nothing normally)
IDLE_CHECK_SECONDS = 1.0  # a thread idle this long checks its database connections before a job
LEAST_LEASE = 0.5  # a claim received with less than this share of its lease left is handed back unrun


class WorkerProcess(OrphanWatch):
    def __init__(self, queues: QueueOrder, concurrency: int, *, shutdown_timeout: float,
                 poll_interval: float, pipe: IO[bytes] | None = None, adapter: Adapter | None = None,
                 prefetch_seconds: float = 0.0, claim_log: ClaimLog | None = None, async_concurrency: int = 0,
                 async_lag_warning: float = 0.25):
        self.adapter = adapter or get_adapter()
        self.queues, self.concurrency = queues, concurrency
        self.shutdown_timeout, self.poll_interval = shutdown_timeout, poll_interval
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.pipe, self._pipe_lock = pipe, threading.Lock()
        self.claim_log = claim_log  # shared with the supervisor, which reads it if this process dies
        self._parent = os.getppid()  # the supervisor, when there is a pipe to it
        self.claims: dict[str, Claim] = {}
        self._claims_lock = threading.Lock()
        # Claims go to the job threads through _ready, a C-level SimpleQueue (no Python-level
        # locks on the per-job path). Each finished job appends one entry to _finished, which
        # the fetch loop counts as a free thread: (the claim when it is to be acked, else
        # None; how long it ran). The fetch loop waits for as many finished jobs as it needs
        # (_collect_finished), and only the job that completes that number wakes it: one wake-up
        # per batch, not one per job (each costs a context switch and a turn at the GIL).
        self._ready: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()
        self._finished: collections.deque[tuple[Claim | None, float]] = collections.deque()
        self._wake_at = 0  # while the fetch loop waits: how many entries in _finished wake it
        self._wake = threading.Lock()  # held; released by the job that reaches _wake_at
        self._wake.acquire()
        self._busy = 0  # sync claims not finished: running, or prefetched in _ready
        self._abusy = 0  # async claims not finished (djjobs/worker/async_runner.py)
        self.async_concurrency = async_concurrency
        self.runner = AsyncRunner(self, async_concurrency, lag_warning=async_lag_warning,
                                  first_slot=concurrency) if async_concurrency else None
        self.prefetch_seconds = prefetch_seconds
        self._finishes: collections.deque[tuple[float, int]] = collections.deque()  # (when, how many)
        self._recent = 0  # jobs finished in the last prefetch_seconds
        self._took = 0.0  # moving average of how long a job takes here, in seconds
        self._now = time.monotonic
        self._acks: list[Claim] = []  # finished, not yet acknowledged (fetch loop only)
        self._local = threading.local()
        self.stopping = threading.Event()
        self.orphaned = threading.Event()  # the supervisor is gone: this process renews its own leases
        self._started_at = time.time()
        self.quiet = threading.Event()
        self._signals = 0
        self.watchdog = Watchdog(on_stuck=lambda: os._exit(3))
        # Claims not told to the supervisor yet, and told ones finished since (see _tell).
        self._untold: dict[str, Claim] = {}
        self._untold_done: list[str] = []
        self._told_at = 0.0
        self._tell_every = min(TELL_SECONDS, float(self.adapter.setting("LEASE_SECONDS")) / 8)
        # A claim must arrive with at least this much lease left to be run (see _drop_late).
        self._least_lease = float(self.adapter.setting("LEASE_SECONDS")) * LEAST_LEASE

    # --- lifecycle -----------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTSTP, lambda *_: self.go_quiet())

    def go_quiet(self) -> None:
        """Stop fetching; running jobs go on (SIGTSTP, or a restart after one)."""
        self.quiet.set()
        logger.info("Quiet: no new jobs fetched")

    def _on_stop(self, signum, frame) -> None:
        """The first SIGTERM or SIGINT stops gracefully; a SIGINT after it stops now (the
        supervisor forwards any second stop signal it gets as SIGINT). A repeated SIGTERM
        changes nothing: a service manager that signals every process of the unit (systemd's
        default KillMode) reaches this process twice, directly and through the supervisor."""
        self._signals += 1
        if self._signals > 1:
            if signum != signal.SIGINT:
                return
            logger.warning("Second stop signal: exiting now; leases will recover running jobs")
            os._exit(1)
        logger.info("Stopping: finishing running jobs (up to %.0f s)", self.shutdown_timeout)
        self.stopping.set()

    def _stopping_now(self) -> bool:
        """Whether running continuations should stop at their next checkpoint: stopping or quiet."""
        return self.stopping.is_set() or self.quiet.is_set()

    def run(self) -> int:
        self._send({"event": "started", "worker_id": self.worker_id, "pid": os.getpid()})
        threads = [threading.Thread(target=self._job_loop, args=(i,), name=f"djjobs-job-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        poller = threading.Thread(target=self._poll_loop, name="djjobs-poller", daemon=True)
        poller.start()
        if self.pipe is not None:
            threading.Thread(target=self._watch_supervisor, name="djjobs-supervisor-watch", daemon=True).start()
        try:
            self._fetch_loop()
        finally:
            abandoned = self._shutdown()
        if abandoned:
            # Threads still run jobs we handed back: do not let interpreter exit wait for them.
            logging.shutdown()
            os._exit(0)
        return 0

    def _fetch_loop(self) -> None:
        """Acknowledge the jobs that finished and claim as many as there are free
        threads, in one adapter call (one round trip on Redis). A finished job stays
        tracked, its lease renewed, until that call has acknowledged it."""
        backoff, was_quiet = 0.0, False
        while not self.stopping.is_set():
            self._tell()
            quiet = self.quiet.is_set()
            free = 0 if quiet else self._acquire_free()
            if free and self.stopping.is_set():
                # The stop came while this loop waited for a free thread (the thread may have
                # been freed by the stop itself: an interrupted continuation): no new claim.
                break
            if quiet:
                if not was_quiet:
                    self._stop_waiting()
                    was_quiet = True
                if self._busy or self._abusy:
                    self._collect_finished(timeout=0.1)
                else:
                    self.stopping.wait(0.1)
            acks = self._acks
            if not free and not acks:
                continue
            try:
                if free:
                    # While jobs run, wake up at least every 0.1 s to acknowledge the ones that finish.
                    claims = self.adapter.fetch(self.queues.next(), free, 0.1 if self._busy or self._abusy else 1.0,
                                                self.worker_id, complete=acks)
                else:
                    self.adapter.complete(acks)
                    claims = []
                backoff = 0.0
            except Exception as exc:  # the acks stay pending: acknowledging twice is harmless
                backoff = min(max(backoff * 2, 0.1), 5.0)
                logger.error("Fetch failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                close_old_connections()  # a connection broken by a database restart is replaced
                self.stopping.wait(backoff)
                continue
            self._acks = []
            if claims:
                claims = self._drop_late(claims)
            if claims and (self.stopping.is_set() or self.quiet.is_set()):
                claims = self._hand_back(claims)
            if claims:
                self._collect_finished()  # jobs that finished while this loop waited in fetch
                was_idle = not self._busy
                with self._claims_lock:  # tracked before any can finish; the supervisor is told after
                    self.claims.update((c.key, c) for c in claims)
                if self.claim_log is not None:
                    self.claim_log.claimed([c.key for c in claims])
                sync = self._hand_out(claims)
                self._busy += len(sync)
                for claim in sync:
                    self._ready.put(claim)
                claim = sync = None  # an idle loop would hold the last job's claim (and payload) until the next one
                if was_idle:
                    # Give the GIL to the job thread just woken, before this loop's own work: on an
                    # idle worker this is the job's start latency (about 0.15 ms less, measured).
                    time.sleep(0)
            if claims or acks:
                self._sync(claims, acks)

    def _drop_late(self, claims: list[Claim]) -> list[Claim]:
        """The claims still worth running. A fetch answered late (a network freeze between
        this process and the storage) brings claims whose lease, counted from when the fetch
        was sent, has ended or nearly: lease recovery may already have handed them to another
        worker, or will before the supervisor's first renewal (it hears of a claim within an
        eighth of the lease and renews every quarter). Those go back unrun: the release is
        fenced by the lease token, so a job recovered meanwhile is left to its new owner, and
        any other returns to the front of its queue."""
        now = self.adapter.clock()
        least = now + self._least_lease
        late = [c for c in claims if c.lease_until < least]
        if not late:
            return claims
        lease, until = float(self.adapter.setting("LEASE_SECONDS")), min(c.lease_until for c in late)
        logger.warning("%d job(s) reached this worker %.1f s after they were claimed (a slow or frozen "
                       "connection to the storage?), with %.1f s of their %g-s lease left, less than the %g s "
                       "needed to renew it in time; handing them back unrun", len(late), now - (until - lease),
                       max(0.0, until - now), lease, self._least_lease)
        try:
            self.adapter.release(late)
        except Exception:
            logger.exception("Handing back %d late job(s) failed; their leases will recover them", len(late))
        return [c for c in claims if c.lease_until >= least]

    def _hand_back(self, claims: list[Claim]) -> list[Claim]:
        """A stop or quiet that came while the fetch was on its way: its claims go back to the
        front of their queues unrun (a continuation interrupted by that stop, released just
        then, would otherwise be claimed again here, and interrupted again). Returns []."""
        try:
            self.adapter.release(claims)
        except Exception:
            logger.exception("Handing back %d job(s) claimed as this worker stopped failed; their leases will "
                             "recover them", len(claims))
        return []

    def _hand_out(self, claims: list[Claim]) -> list[Claim]:
        """Give the async claims to the event loop (their class' ``perform`` is ``async def``);
        returns the others, for the job threads."""
        if self.runner is None or not registry.has_async():
            return claims
        sync, asyn = self.runner.split(claims)
        if asyn:
            self._abusy += len(asyn)
            self.runner.submit(asyn)
        return sync

    def _finish(self, claim: Claim | None, took: float, asynchronous: bool = False) -> None:
        """A job thread (or async slot) is free (called by it): wake the fetch loop if it waits for this one."""
        finished = self._finished
        finished.append((claim, took, asynchronous))
        if 0 < self._wake_at <= len(finished):
            self._wake_at = 0
            try:
                self._wake.release()
            except RuntimeError:  # another job thread woke it first
                pass

    def _collect_finished(self, timeout: float = 0.0, want: int = 1) -> None:
        """Count the jobs that finished since the last look as free threads, and keep
        those to acknowledge; if fewer than ``want`` have, wait up to ``timeout`` for
        them (it may return early, with fewer: callers check what they got)."""
        finished, acks = self._finished, self._acks
        if timeout > 0 and (self._busy or self._abusy) and len(finished) < want:
            self._wake.acquire(blocking=False)  # a wake-up left over from an earlier wait: not this one's
            self._wake_at = want
            if len(finished) < want:  # checked again after arming: no finish is missed
                self._wake.acquire(timeout=timeout)
            self._wake_at = 0
        n = 0
        while finished:
            claim, took, asynchronous = finished.popleft()
            if asynchronous:
                self._abusy -= 1
            else:
                self._busy -= 1
                n += 1
                self._took += (took - self._took) / 16  # moving average of (sync) job durations
            if claim is not None:
                acks.append(claim)
        if n and self.prefetch_seconds:
            self._finishes.append((self._now(), n))
            self._recent += n

    def _capacity(self) -> int:
        """How many claims this process may hold: one per thread, plus, while it
        drains short jobs, as many as it finished in the last ``prefetch_seconds``
        (at most 4 x concurrency). Claiming ahead keeps threads busy during the fetch
        round trip and makes batches larger; bounding it by the recent finish rate means
        a prefetched job waits here about ``prefetch_seconds`` at most, and jobs that
        take longer than that on average are never claimed ahead of a free thread."""
        if not self.prefetch_seconds or self._took > self.prefetch_seconds:
            return self.concurrency  # no prefetch, or jobs too long to claim ahead of a thread
        horizon, finishes = self._now() - self.prefetch_seconds, self._finishes
        while finishes and finishes[0][0] < horizon:
            self._recent -= finishes.popleft()[1]
        return self.concurrency + min(self._recent, 4 * self.concurrency)

    def _acquire_free(self) -> int:
        """How many jobs to claim now, waiting (bounded) for a thread when all are busy.
        Claims go in batches rather than one job per round trip: while prefetching,
        top up once half the allowance is free (or the threads are about to run dry);
        without prefetch, wait up to a millisecond for half the threads to be free. Free async
        slots count besides (:meth:`AsyncRunner.room`), less the sync claims that wait beyond
        the threads (claimed for async slots, they turned out sync)."""
        self._collect_finished()
        capacity = self._capacity()
        if self._busy - capacity >= self._async_room():
            # No thread for another job, and no fetch until one is free: end an idle
            # registration the last fetch left in place, or enqueues would go on handing
            # jobs to this process that nothing reads (they would wait for its threads, and
            # past their lease, be recovered and run elsewhere while still in this
            # process' channel). Without a registration this costs nothing.
            self._stop_waiting()
            self._collect_finished(timeout=min(0.5, self._tell_every))
            capacity = self._capacity()
            if self._busy - capacity >= self._async_room():
                return 0
        ahead = capacity - self.concurrency
        if ahead:
            while (capacity - self._busy) * 2 < ahead and self._ready.qsize() * 2 > self.concurrency:
                busy = self._busy
                # Finishes until half the allowance is free, or (each free thread takes a
                # prefetched claim) until the threads are about to run dry, whichever is first.
                want = min((ahead + 1) // 2 - (capacity - busy), self._ready.qsize() - self.concurrency // 2)
                self._collect_finished(timeout=0.05, want=max(1, want))
                if self._busy == busy:
                    break
        elif (capacity - self._busy) * 2 < capacity:
            deadline = time.monotonic() + GATHER_SECONDS
            while (capacity - self._busy) * 2 < capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                busy = self._busy
                self._collect_finished(timeout=remaining, want=(capacity + 1) // 2 - (capacity - busy))
                if self._busy == busy:
                    break
        return max(0, capacity - self._busy + self._async_room())

    def _async_room(self) -> int:
        runner = self.runner
        return runner.room(self._abusy) if runner is not None and registry.has_async() else 0

    def _job_loop(self, thread: int = 0) -> None:
        ready = self._ready
        while True:
            claim = None  # not the last job's claim (its payload) held while this thread waits
            try:
                claim = ready.get()
                if claim is None:
                    return
                self._run(claim, thread)
            except JobTimeout:  # a timeout that landed between jobs: this thread lives on
                continue
            except BaseException:  # never lose a thread: the worker counts on all of them
                logger.exception("A job thread caught an unexpected error; it goes on")

    # --- one job ---------------------------------------------------------
    def _run(self, claim: Claim, thread: int = 0) -> None:
        """Run one job. A success or discard is handed to the fetch loop, which
        acknowledges it with its next fetch; other outcomes are reported here. The claim
        log says which claim this thread runs, and which finished, for the supervisor to
        settle them if this process dies."""
        done: Claim | None = None
        took = 0.0
        log = self.claim_log
        outcome: Outcome | None = None
        try:
            if claim.envelope is None:
                process(self.adapter, claim)
            elif rate_limited(self.adapter, claim):
                pass  # rescheduled before it started (djjobs/ratelimits.py)
            else:
                if log is not None:
                    log.running(thread, claim.key)
                outcome = self._execute(claim)
                took = outcome.duration
                if outcome.kind == SUCCEEDED:  # (a discard is reported here: adapter.discard)
                    done = claim
                    if log is not None:
                        log.finished(claim.key)
                else:
                    self._report(claim, lambda: report(self.adapter, claim, outcome), claim.envelope.describe())
        except Exception:
            logger.exception("Reporting the outcome of %s failed; its lease will recover it", claim.token)
        finally:
            if outcome is not None:
                outcome.release()  # a failed run's locals go now, not at some later GC (Outcome.release)
            if done is None:
                self._sync([], [claim])
            self._finish(done, took)

    def _report(self, claim: Claim, call, what: str) -> None:
        """Report an outcome, retrying through a broker/database outage while the lease
        lasts (the supervisor keeps renewing it), so a restart does not re-run finished jobs."""
        deadline = time.monotonic() + max(1.0, float(self.adapter.setting("LEASE_SECONDS")) / 2)
        delay = 0.1
        while True:
            try:
                return call()
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("Reporting %s failed (%s: %s); retrying in %.1f s", what,
                               type(exc).__name__, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                close_old_connections()

    def _execute(self, claim: Claim) -> Outcome:
        env = claim.envelope
        timeout = getattr(registry.lookup(env.job), "timeout", None)
        local = self._local
        if time.monotonic() - getattr(local, "last_job", 0.0) > IDLE_CHECK_SECONDS:
            _close_old_connections()  # idle for a while: the connection may have aged out meanwhile
        outcome = None
        try:
            if timeout:
                self.watchdog.start(timeout, env.describe())
            outcome = execute(env, contain_exits=True, context=run_context(self.adapter, claim, self._stopping_now))
        except JobTimeout:  # landed after execute returned: the outcome stands
            pass
        finally:
            try:
                self.watchdog.stop()
            except JobTimeout:  # raised as the job finished, maybe before its entry was dropped
                self.watchdog.stop()
            _close_old_connections()  # as Django does after each request: never reuse a broken one
            local.last_job = time.monotonic()
        if outcome is None:  # interrupted outside perform: leave it to the lease, never run twice here
            raise JobTimeout(f"{env.describe()} was interrupted by its timeout outside perform()")
        return outcome

    # --- claims shared with the supervisor ------------------------------------
    def _sync(self, claims: list[Claim], done: list[Claim]) -> None:
        """Note the claims the supervisor must renew from now on and the ones it may stop
        renewing (acknowledged, reported or handed back); :meth:`_tell` sends them."""
        with self._claims_lock:
            for claim in done:
                self.claims.pop(claim.key, None)
                if self._untold.pop(claim.key, None) is None:
                    self._untold_done.append(claim.key)
            for claim in claims:
                self._untold[claim.key] = claim

    def _tell(self, force: bool = False) -> None:
        """Send the supervisor what :meth:`_sync` noted, at most every ``_tell_every``
        seconds (fetch loop only). A lease lasts LEASE_SECONDS and the supervisor renews
        every quarter of it, so a claim told within an eighth is renewed in time; a job
        that finishes before then is never told at all, which spares a message, a pipe
        write and a supervisor wake-up per batch of short jobs."""
        if not (self._untold or self._untold_done):
            return
        now = time.monotonic()
        if not force and now - self._told_at < self._tell_every:
            return
        self._told_at = now
        with self._claims_lock:
            claims, self._untold = list(self._untold.values()), {}
            done, self._untold_done = self._untold_done, []
        self._send({"event": "sync", "done": done, "claims": [
            {"key": c.key, "token": _jsonable(c.token), **_busy(c), "lease_until": c.lease_until} for c in claims]})

    def _send(self, message: dict) -> None:
        if self.pipe is None:
            return
        data = orjson.dumps(message) + b"\n"
        with self._pipe_lock:
            try:
                self.pipe.write(data)
                self.pipe.flush()
            except (BrokenPipeError, OSError):
                self._orphan("its pipe is closed")

    # --- poller ------------------------------------------------------------
    def _poll_loop(self) -> None:
        """Promote due scheduled/retry jobs and recover expired leases, at a randomized
        interval so that many processes do not stampede."""
        passes = 0
        while not self.stopping.is_set():
            try:
                self.adapter.promote_due()
                self.adapter.recover_expired()
                prune = getattr(self.adapter, "prune", None)
                if prune is not None:
                    prune()
                if passes % BATCH_REPAIR_EVERY == 0:  # batches left inconsistent by hand (base.py)
                    self.adapter.repair_batches()
                passes += 1
                self.watchdog.check()
            except Exception as exc:
                logger.error("Poller: %s: %s", type(exc).__name__, exc)
            finally:
                close_old_connections()
            self.stopping.wait(self.poll_interval * random.uniform(0.5, 1.5))

    # --- shutdown ----------------------------------------------------------
    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.shutdown_timeout
        unstarted = []
        while True:  # prefetched jobs that no thread has taken yet go back first, at once
            try:
                claim = self._ready.get_nowait()
            except queue.Empty:
                break
            if claim is not None:
                unstarted.append(claim)
        self._busy -= len(unstarted)
        if self.runner is not None:  # async claims no slot has started: back at once too
            waiting = self.runner.unstarted()
            self._abusy -= len(waiting)
            unstarted += waiting
        for _ in range(self.concurrency):
            self._ready.put(None)  # each job thread exits after its current job
        if unstarted:
            self._release(unstarted)
        self._stop_waiting()
        while True:
            self._collect_finished(timeout=0.05)
            self._tell()  # a job claimed just before the stop is renewed while it finishes
            if self._acks and (not (self._busy or self._abusy) or len(self._acks) >= 100):
                self._flush_acks()
            if not (self._busy or self._abusy) or time.monotonic() >= deadline:
                break
        if self.runner is not None and self.runner.cancel_all(timeout=2.0):
            # Past the shutdown timeout: running coroutines are cancelled (their claims stay
            # tracked, and are handed back below); those that finished meanwhile are acknowledged.
            self._collect_finished()
        self._flush_acks()
        with self._claims_lock:
            left = list(self.claims.values())
        if left:
            logger.warning("Shutdown timeout: releasing %d unfinished job(s) to their queues", len(left))
            self._release(left)
        self._tell(force=True)
        self._send({"event": "stopped"})
        if self.orphaned.is_set():  # no supervisor to unregister this process
            try:
                self.adapter.unregister(self.worker_id)
            except Exception as exc:
                logger.error("Could not unregister %s: %s", self.worker_id, exc)
        return len(left)

    def _stop_waiting(self) -> None:
        """No fetch for a while (quiet, stopping, or no free thread): jobs handed to the last
        idle fetch but not received yet were never tracked; they go back to their queues at once."""
        try:
            unreceived = self.adapter.stop_waiting(self.worker_id)
            if unreceived:
                self.adapter.release(unreceived)
        except Exception:
            logger.exception("Ending the idle wait failed; jobs handed to this worker meanwhile will be "
                             "recovered by their leases")

    def _release(self, claims: list[Claim]) -> None:
        try:
            self.adapter.release(claims)
        except Exception:
            logger.exception("Handing back %d job(s) failed; their leases will recover them", len(claims))
        self._sync([], claims)

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if not acks:
            return
        try:
            self._report(acks[0], lambda: self.adapter.complete(acks), f"{len(acks)} finished job(s)")
        except Exception:
            logger.exception("Acknowledging %d job(s) failed; their leases will recover them", len(acks))
        self._sync([], acks)


_db_thread = threading.local()


@receiver(connection_created)
def _note_database_connection(sender, connection, **kwargs) -> None:
    _db_thread.used = True


def _close_old_connections() -> None:
    """Django's ``close_old_connections``, skipped in a thread that has never opened a
    database connection (there is nothing to close, and looking costs a few µs per job
    through asgiref's thread-critical Local). Connections are per thread, and
    ``connection_created`` is sent in the thread that connects."""
    if getattr(_db_thread, "used", False):
        close_old_connections()


def _jsonable(token):
    return token if isinstance(token, (str, int, float, list, dict, type(None))) else str(token)
