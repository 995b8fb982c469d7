"""One worker process: the fetch loop, its job threads and its poller.

Started by the supervisor (``runjobs``), which renews this process' leases:
a job that holds the GIL here cannot stall the renewal. This process tells
the supervisor which claims it holds through a pipe (one JSON line each).

Promises: a job is fetched only when a thread is free to run it at once;
on SIGTERM no new job is fetched, running jobs get ``shutdown_timeout``
seconds to finish, and the rest are released to the front of their queues
before the process exits 0. SIGTSTP makes the process quiet (no new fetches).
A second SIGINT/SIGTERM exits at once (the leases recover the jobs).
"""
from __future__ import annotations

import logging
import queue
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import IO

import orjson
from django.db import close_old_connections

from .. import registry
from ..adapters import get_adapter
from ..adapters.base import Adapter, Claim
from ..execution import DISCARDED, SUCCEEDED, Outcome, execute
from ..errors import JobTimeout
from .processor import process, report
from .queues import QueueOrder
from .timeouts import Watchdog

logger = logging.getLogger("djjobs")
GATHER_SECONDS = 0.001


class WorkerProcess:
    def __init__(self, queues: QueueOrder, concurrency: int, *, shutdown_timeout: float,
                 poll_interval: float, pipe: IO[bytes] | None = None, adapter: Adapter | None = None):
        self.adapter = adapter or get_adapter()
        self.queues, self.concurrency = queues, concurrency
        self.shutdown_timeout, self.poll_interval = shutdown_timeout, poll_interval
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.pipe, self._pipe_lock = pipe, threading.Lock()
        self.claims: dict[str, Claim] = {}
        self._claims_lock = threading.Lock()
        self._free = threading.Semaphore(concurrency)
        self._acks: queue.SimpleQueue[Claim] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.quiet = threading.Event()
        self._signals = 0
        self.watchdog = Watchdog(on_stuck=lambda: os._exit(3))

    # --- lifecycle -----------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTSTP, lambda *_: (self.quiet.set(), logger.info("Quiet: no new jobs fetched")))

    def _on_stop(self, signum, frame) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("Second stop signal: exiting now; leases will recover running jobs")
            os._exit(1)
        logger.info("Stopping: finishing running jobs (up to %.0f s)", self.shutdown_timeout)
        self.stopping.set()

    def run(self) -> int:
        self._send({"event": "started", "worker_id": self.worker_id, "pid": os.getpid()})
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="djjobs-job")
        poller = threading.Thread(target=self._poll_loop, name="djjobs-poller", daemon=True)
        poller.start()
        acker = threading.Thread(target=self._ack_loop, name="djjobs-acker", daemon=True)
        acker.start()
        try:
            self._fetch_loop(pool)
        finally:
            abandoned = self._shutdown(pool)
        if abandoned:
            # Threads still run jobs we handed back: do not let interpreter exit wait for them.
            logging.shutdown()
            os._exit(0)
        return 0

    def _fetch_loop(self, pool: ThreadPoolExecutor) -> None:
        backoff = 0.0
        while not self.stopping.is_set():
            if self.quiet.is_set():
                self.stopping.wait(0.5)
                continue
            free = self._acquire_free()
            if not free:
                continue
            try:
                claims = self.adapter.fetch(self.queues.next(), free, 1.0, self.worker_id)
                backoff = 0.0
            except Exception as exc:
                self._release_free(free)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                logger.error("Fetch failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                close_old_connections()  # a connection broken by a database restart is replaced
                self.stopping.wait(backoff)
                continue
            self._release_free(free - len(claims))
            if claims:
                with self._claims_lock:  # tracked before any can finish; the supervisor is told after
                    self.claims.update((c.key, c) for c in claims)
                for claim in claims:
                    pool.submit(self._run, claim)
                self._track(claims)

    def _acquire_free(self) -> int:
        """Block (bounded) for one free thread, then take every other free one. While
        jobs are finishing, wait up to a millisecond for half the threads to be free, so
        a busy worker claims in batches rather than one job per round trip."""
        if not self._free.acquire(timeout=0.5):
            return 0
        free = 1
        deadline = time.monotonic() + GATHER_SECONDS
        while free < self.concurrency:
            if self._free.acquire(blocking=False):
                free += 1
                continue
            remaining = deadline - time.monotonic()
            if free * 2 >= self.concurrency or remaining <= 0 or not self._free.acquire(timeout=remaining):
                break
            free += 1
        return free

    def _release_free(self, n: int) -> None:
        for _ in range(n):
            self._free.release()

    # --- one job ---------------------------------------------------------
    def _run(self, claim: Claim) -> None:
        acked_later = False
        try:
            if claim.envelope is None:
                process(self.adapter, claim)
            else:
                outcome = self._execute(claim)
                if outcome.kind in (SUCCEEDED, DISCARDED):
                    self._acks.put(claim)  # acknowledged in batches by the acker thread
                    acked_later = True
                else:
                    self._report(claim, lambda: report(self.adapter, claim, outcome), claim.envelope.describe())
        except Exception:
            logger.exception("Reporting the outcome of %s failed; its lease will recover it", claim.token)
        finally:
            if not acked_later:
                self._untrack([claim])
            self._free.release()

    def _ack_loop(self) -> None:
        """Acknowledge finished jobs in batches: one adapter call for all that finished
        since the last one. A job stays tracked (its lease renewed) until acknowledged."""
        while not (self.stopping.is_set() and self._acks.empty() and not self.claims):
            self._flush_acks(timeout=0.2)

    def _flush_acks(self, timeout: float = 0.0) -> None:
        try:
            batch = [self._acks.get(timeout=timeout) if timeout else self._acks.get_nowait()]
        except queue.Empty:
            return
        gather_until = time.monotonic() + 0.002  # a moment for the jobs finishing alongside
        while len(batch) < 1000:
            try:
                batch.append(self._acks.get(timeout=max(0.0, gather_until - time.monotonic())))
            except queue.Empty:
                break
        try:
            self._report(batch[0], lambda: self.adapter.complete(batch), f"{len(batch)} finished job(s)")
        except Exception:
            logger.exception("Acknowledging %d job(s) failed; their leases will recover them", len(batch))
        self._untrack(batch)

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
        close_old_connections()
        outcome = None
        try:
            self.watchdog.start(timeout, env.describe())
            outcome = execute(env)
        except JobTimeout:  # landed after execute returned: the outcome stands
            pass
        finally:
            try:
                self.watchdog.stop()
            except JobTimeout:
                pass
            close_old_connections()
        if outcome is None:  # interrupted outside perform: leave it to the lease, never run twice here
            raise JobTimeout(f"{env.describe()} was interrupted by its timeout outside perform()")
        return outcome

    # --- claims shared with the supervisor ------------------------------------
    def _track(self, claims: list[Claim]) -> None:
        self._send({"event": "claimed", "claims": [
            {"key": c.key, "token": _jsonable(c.token), "job": c.envelope.job if c.envelope else None,
             "queue": c.envelope.queue if c.envelope else None,
             "job_id": c.envelope.job_id if c.envelope else None, "lease_until": c.lease_until}
            for c in claims]})

    def _untrack(self, claims: list[Claim]) -> None:
        with self._claims_lock:
            for claim in claims:
                self.claims.pop(claim.key, None)
        self._send({"event": "done", "keys": [c.key for c in claims]})

    def _send(self, message: dict) -> None:
        if self.pipe is None:
            return
        data = orjson.dumps(message) + b"\n"
        with self._pipe_lock:
            try:
                self.pipe.write(data)
                self.pipe.flush()
            except (BrokenPipeError, OSError):
                logger.error("Lost the supervisor; stopping")
                self.stopping.set()

    # --- poller ------------------------------------------------------------
    def _poll_loop(self) -> None:
        """Promote due scheduled/retry jobs and recover expired leases, at a randomized
        interval so that many processes do not stampede."""
        while not self.stopping.is_set():
            try:
                self.adapter.promote_due()
                self.adapter.recover_expired()
                prune = getattr(self.adapter, "prune", None)
                if prune is not None:
                    prune()
                self.watchdog.check()
            except Exception as exc:
                logger.error("Poller: %s: %s", type(exc).__name__, exc)
            finally:
                close_old_connections()
            self.stopping.wait(self.poll_interval * random.uniform(0.5, 1.5))

    # --- shutdown ----------------------------------------------------------
    def _shutdown(self, pool: ThreadPoolExecutor) -> int:
        deadline = time.monotonic() + self.shutdown_timeout
        pool.shutdown(wait=False, cancel_futures=False)
        while self.claims and time.monotonic() < deadline:
            time.sleep(0.05)
        self._flush_acks()
        with self._claims_lock:
            left = list(self.claims.values())
        if left:
            logger.warning("Shutdown timeout: releasing %d unfinished job(s) to their queues", len(left))
            self.adapter.release(left)
            self._untrack(left)
        self._send({"event": "stopped"})
        return len(left)


def _jsonable(token):
    return token if isinstance(token, (str, int, float, list, dict, type(None))) else str(token)
