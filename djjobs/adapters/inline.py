"""Runs each job synchronously in the caller, at enqueue time (scripts, tests).

``wait``/``wait_until`` are ignored: a scheduled job runs at once. Retries and
``retry_job`` also run again at once, without waiting (at most 100 runs in a
row), and a job that fails for good re-raises its exception to the caller.
Nothing is stored, so there is nothing to inspect: the inspection methods
report empty state. Batches are kept in this process (memory_batches.py): each job of a
batch is settled as its run in the caller ends, and a callback runs in the caller of the
step that fires it (the last job's enqueue, or the ``with`` block's exit).
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Sequence

from ..envelope import Envelope
from .base import Adapter, Counts, JobRecord, Page, batch_of
from .local import LocalRates, LocalResults
from .memory_batches import MemoryBatches


class InlineAdapter(MemoryBatches, Adapter):
    name = "inline"
    supports_fetch = False

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self._results = LocalResults(lambda: self.clock())  # django.tasks results, in this process
        self._rates = LocalRates(lambda: self.clock())  # djjobs.limit() windows, in this process
        self._cond = threading.RLock()  # (a callback runs under it, and may enqueue)
        self._recs: dict = {}  # nothing is stored
        self._batch_init()

    def enqueue(self, envelope: Envelope) -> None:
        """Runs the job at once; a unique job too (it has finished before any second enqueue
        could see it held), so uniqueness never refuses an enqueue here."""
        from ..in_caller import perform_in_caller, run_in_caller
        self.encode(envelope)  # same limits as every adapter
        if batch_of(envelope) is None:
            perform_in_caller(envelope.copy(run_at=None), retry_later=False)
            return
        self._run_in_batch(envelope, lambda env: run_in_caller(env.copy(run_at=None), retry_later=False)[1])

    def _store(self, envelope: Envelope, raw: bytes, now: float) -> None:
        self.enqueue(envelope)  # a batch callback firing: it runs here

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        for env in envelopes:
            self.enqueue(env)
        return {}

    def take_rate(self, key: str, limit: int, period: float, member: str) -> float:
        return self._rates.take(key, limit, period)

    def cancel(self, job_ids) -> dict[str, str]:
        return {}  # every job ran in its caller: none is ever waiting

    def counts(self) -> Counts:
        return Counts()

    def queues(self) -> list:
        return []

    def workers(self) -> list:
        return []

    def jobs(self, state: str, *, queue: str | None = None, job: str | None = None,
             search: str | None = None, page: int = 1, per_page: int = 25) -> Page:
        return Page([], 0, page, per_page)

    def get(self, job_id: str) -> JobRecord | None:
        return None

    def history(self, days: int = 30) -> list[tuple[str, int, int]]:
        today = dt.date.fromtimestamp(self.clock())
        return [((today - dt.timedelta(days=n)).isoformat(), 0, 0) for n in range(days - 1, -1, -1)]

    def cron_states(self) -> dict[str, dict]:
        return {}

    def save_result(self, job_id: str, result: dict, ttl: float) -> None:
        self._results.save(job_id, result, ttl)

    def load_result(self, job_id: str) -> dict | None:
        return self._results.load(job_id)
