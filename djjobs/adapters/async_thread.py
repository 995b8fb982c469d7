"""Runs jobs on a thread pool inside the current process (development).

Jobs live only in this process' memory (:class:`MemoryAdapter`): **every job
not yet finished is lost when the process exits or restarts** (including the
development server's auto-reload). Scheduled jobs and retries wait on a timer.
Use the redis or database adapter in production; a system check warns when
this adapter is configured with ``DEBUG = False``.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ..envelope import Envelope
from .memory import MemoryAdapter

logger = logging.getLogger("djjobs")


class AsyncAdapter(MemoryAdapter):
    name = "async"

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.threads = int(self.setting("ASYNC_THREADS"))
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher: threading.Thread | None = None
        self._free = threading.Semaphore(self.threads)
        self._stopping = threading.Event()
        self._pid = os.getpid()
        self.worker_id = f"async-{os.getpid()}"

    def _ensure_started(self) -> None:
        if self._dispatcher is not None and self._pid == os.getpid() and self._dispatcher.is_alive():
            return
        with self._cond:
            if self._dispatcher is not None and self._pid == os.getpid() and self._dispatcher.is_alive():
                return
            self._pid = os.getpid()
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="djjobs-async")
            self._dispatcher = threading.Thread(target=self._dispatch, name="djjobs-async-dispatch", daemon=True)
            self._dispatcher.start()

    def enqueue(self, envelope: Envelope) -> str | None:
        holder = super().enqueue(envelope)
        self._ensure_started()
        return holder

    def enqueue_many(self, envelopes) -> dict[str, str]:
        duplicates = super().enqueue_many(envelopes)
        self._ensure_started()
        return duplicates

    def _dispatch(self) -> None:
        from ..worker.processor import process
        while not self._stopping.is_set():
            self._free.acquire()
            claims = self.fetch(None, 1, 0.5, self.worker_id)  # None: every queue
            if not claims:
                self._free.release()
                continue
            self._pool.submit(self._run, process, claims[0])

    def _run(self, process, claim) -> None:
        try:
            process(self, claim, self._stopping.is_set)
        except Exception:
            logger.exception("djjobs async adapter: processing %s failed", claim.token)
        finally:
            self._free.release()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no job is ready, scheduled soon or running (tests, scripts)."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.counts()
            if counts.enqueued == 0 and counts.busy == 0:
                return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=False)
