"""Per-job timeouts (``timeout = 30`` on a Job class) for jobs running on threads.

Python cannot kill a thread, so a timeout is enforced in two steps:
1. at the deadline, :class:`~djjobs.errors.JobTimeout` is raised inside the
   job's thread (``PyThreadState_SetAsyncExc``). Pure-Python code stops at its
   next bytecode; the job then fails like any other (retry rules apply).
2. a job still running ``GRACE`` seconds later is blocked in C code that the
   exception cannot interrupt: the worker process exits so its supervisor
   starts a fresh one, and the job is recovered when its lease expires (and
   counts as a worker death: three of those make it a poison pill).
"""
from __future__ import annotations

import ctypes
import logging
import threading
import time

from ..errors import JobTimeout

logger = logging.getLogger("djjobs")
GRACE = 10.0


class Watchdog:
    def __init__(self, on_stuck):
        self._running: dict[int, tuple[float, str, bool]] = {}  # thread id -> (deadline, description, raised)
        self._lock = threading.Lock()
        self._on_stuck = on_stuck

    def start(self, timeout: float | None, description: str) -> None:
        if timeout:
            with self._lock:
                self._running[threading.get_ident()] = (time.monotonic() + timeout, description, False)

    def stop(self) -> None:
        """Forget this thread's job. A JobTimeout raised while it stops (the deadline
        passed as the job finished) may land here, before the entry is gone: the caller
        catches it and calls ``stop`` again, which cannot be interrupted twice (``check``
        raises once per entry, under the lock)."""
        if self._running:  # no lock when no job has a timeout (the common case)
            with self._lock:
                self._running.pop(threading.get_ident(), None)

    def check(self) -> None:
        now = time.monotonic()
        with self._lock:
            items = list(self._running.items())
        for ident, (deadline, description, raised) in items:
            if not raised and now >= deadline:
                with self._lock:  # only into a thread still running that job, and once: never into later work
                    if self._running.get(ident) != (deadline, description, False):
                        continue
                    logger.warning("%s exceeded its timeout; raising JobTimeout in its thread", description)
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(JobTimeout))
                    self._running[ident] = (deadline, description, True)
            elif raised and now >= deadline + GRACE:
                logger.error("%s is still running %.0f s after its timeout (blocked in C code?); "
                             "restarting this worker process", description, GRACE)
                self._on_stuck()
                return
