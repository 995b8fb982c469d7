"""A worker process whose supervisor is gone (killed with SIGKILL): noticed at once, and
the process' own leases renewed until its jobs end (the supervisor renewed them before).

A mixin of :class:`~djjobs.worker.process.WorkerProcess`, which provides ``adapter``,
``pipe``, ``claims`` (under ``_claims_lock``), ``stopping``, ``orphaned``, ``queues``,
``concurrency``, ``worker_id`` and ``_started_at``.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time

from django.db import close_old_connections

from ..adapters.base import WorkerInfo

logger = logging.getLogger("djjobs")


class OrphanWatch:
    # --- a supervisor that is gone ---------------------------------------------
    def _watch_supervisor(self) -> None:
        """Notice the supervisor's death at once, not at the poller's next turn: the lease it
        last renewed may have only 3/4 of LEASE_SECONDS left. Its end of the pipe closes when
        it dies, which ``poll`` reports on ours at once (Linux, macOS); ``os.getppid()`` is
        checked besides, every eighth of the lease (at most every 0.25 s). Runs until the
        process exits: a supervisor killed during a graceful stop is noticed too."""
        every = min(0.25, float(self.adapter.setting("LEASE_SECONDS")) / 8)
        try:
            watch = select.poll()
            watch.register(self.pipe.fileno(), 0)  # errors and hang-ups are always reported
        except (AttributeError, OSError, ValueError):  # no poll(), or a pipe without a file descriptor
            watch = None
        while not self.orphaned.is_set():
            events = watch.poll(every * 1000) if watch is not None else self.orphaned.wait(every)
            if os.getppid() != self._parent:
                self._orphan(f"pid {self._parent} is gone")
            elif events:  # the pipe broke (or, POLLNVAL, was closed here): watch its parent only
                if any(flag & (select.POLLERR | select.POLLHUP) for _, flag in events):
                    self._orphan("its pipe is closed")
                watch = None

    def _orphan(self, why: str) -> None:
        """The supervisor is gone (once, from any thread): stop gracefully, and renew this
        process' own claims until they end, since nobody else will."""
        if self.orphaned.is_set():
            return
        self.orphaned.set()
        logger.error("Lost the supervisor (%s); stopping, and renewing this process' own leases until its "
                     "jobs end", why)
        self.stopping.set()
        threading.Thread(target=self._renew_own_leases, name="djjobs-renew", daemon=True).start()

    def _renew_own_leases(self) -> None:
        """Heartbeat through this process' adapter every LEASE_SECONDS / 4, at once first,
        as the supervisor did; a daemon thread, it ends with the process. A job that holds
        the GIL can delay it, which is why the supervisor does this in normal operation."""
        every = float(self.adapter.setting("LEASE_SECONDS")) / 4
        seen: dict[str, float] = {}
        while True:
            with self._claims_lock:
                claims = list(self.claims.values())
            now = time.time()
            seen = {c.key: seen.get(c.key, now) for c in claims}
            busy = [{**_busy(c), "started_at": seen[c.key]} for c in claims]
            info = WorkerInfo(self.worker_id, socket.gethostname(), os.getpid(), list(self.queues.names),
                              self.concurrency, self._started_at, busy=busy)
            try:
                self.adapter.heartbeat(info, claims)
            except Exception as exc:
                logger.error("Renewing this process' leases failed (%s: %s); retrying", type(exc).__name__, exc)
            finally:
                close_old_connections()
            del claims, busy
            time.sleep(every)


def _busy(claim) -> dict:
    """What the worker listing shows of a claim (the supervisor's heartbeat adds when it started)."""
    env = claim.envelope
    return {"job_id": env.job_id, "job": env.job, "queue": env.queue} if env else {"job_id": None, "job": None,
                                                                                   "queue": None}
