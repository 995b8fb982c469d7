"""Batches in the memory adapter (the contract: ``adapters/base.py``; the rules:
``djjobs/batches.py``), under the store's lock: each batch's counts, and the batch of each
job still pending in one. Settling pops the job's entry, so a job is settled once."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from ..batch_status import BatchStatus, fired_status
from ..envelope import Envelope
from .base import BatchPage, batch_of, batch_refused, fired

ENDS = {"": "succeeded", "dead": "dead", "discarded": "discarded", "deleted": "discarded", "cancelled": "cancelled"}


@dataclasses.dataclass
class _Batch:
    status: BatchStatus
    callbacks: dict[str, Envelope]
    fired: set = dataclasses.field(default_factory=set)
    failures: list = dataclasses.field(default_factory=list)  # ids of its jobs that ended dead or cancelled


class MemoryBatches:
    """Mixed into MemoryAdapter (it uses ``_cond``, ``_recs``, ``_store``, ``encode`` and ``clock``)."""

    def _batch_init(self) -> None:
        self._batches: dict[str, _Batch] = {}
        self._bjobs: dict[str, str] = {}  # job id -> its batch, while it is pending there

    def open_batch(self, status: BatchStatus, callbacks: dict[str, Envelope]) -> None:
        with self._cond:
            self._batches.setdefault(status.id, _Batch(dataclasses.replace(status, closed=False), dict(callbacks)))

    def close_batch(self, batch_id: str) -> None:
        with self._cond:
            batch = self._batches.get(batch_id)
            if batch is not None and not batch.status.closed:
                batch.status = dataclasses.replace(batch.status, closed=True)
                self._batch_check(batch)

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        with self._cond:
            batch = self._batches.get(batch_id)
            return batch.status if batch is not None else None

    def batches(self, *, page: int = 1, per_page: int = 25) -> BatchPage:
        with self._cond:
            items = sorted((b.status for b in self._batches.values()), key=lambda s: -s.created_ts)
        start = (page - 1) * per_page
        return BatchPage(items[start:start + per_page], len(items), page, per_page)

    def batch_failures(self, batch_id: str, limit: int = 100) -> list[str]:
        with self._cond:
            batch = self._batches.get(batch_id)
            ids = [] if batch is None else [i for i in reversed(batch.failures) if i in self._recs]
        return ids[:limit]

    def repair_batches(self) -> int:
        with self._cond:
            changed = set()
            for job_id in [i for i in self._bjobs if i not in self._recs]:
                changed.add(self._bjobs[job_id])
                self._batch_ended(job_id, "deleted")
            for batch in self._batches.values():
                if self._batch_check(batch):
                    changed.add(batch.status.id)
            cutoff = self.clock() - self.setting("BATCH_RETENTION_SECONDS")
            for batch_id in [i for i, b in self._batches.items() if b.status.complete and b.status.completed_ts < cutoff]:
                del self._batches[batch_id]
            return len(changed)

    def _run_in_batch(self, envelope: Envelope, run) -> str:
        """Run a job of a batch in the caller (inline adapter, ``perform_enqueued_jobs``): it
        joins its batch, ``run(envelope)`` returns its outcome kind, and its end is settled
        (dead when it raises)."""
        batch_id = batch_of(envelope)
        with self._cond:
            self._batch_admit([envelope])
            self._batch_join(envelope.job_id, batch_id)
        how = "dead"
        try:
            kind = run(envelope)
            how = "" if kind == "succeeded" else kind
            return kind
        finally:
            with self._cond:
                self._batch_ended(envelope.job_id, how)

    # --- inside the store's steps (the caller holds the lock) --------------------
    def _batch_admit(self, envelopes: Sequence[Envelope]) -> None:
        """Refuse the whole enqueue when one of its batches is complete or unknown."""
        for env in envelopes:
            batch_id = batch_of(env)
            if batch_id is not None:
                batch = self._batches.get(batch_id)
                if batch is None or batch.status.complete:
                    raise batch_refused(batch_id)

    def _batch_join(self, job_id: str, batch_id: str) -> None:
        batch = self._batches[batch_id]
        batch.status = dataclasses.replace(batch.status, total=batch.status.total + 1,
                                           pending=batch.status.pending + 1)
        self._bjobs[job_id] = batch_id

    def _batch_ended(self, job_id: str, how: str) -> None:
        """``job_id`` ended (``how`` as for prerequisites): settle it in its batch, firing
        the callbacks this end decides."""
        batch_id = self._bjobs.pop(job_id, None)
        batch = self._batches.get(batch_id) if batch_id is not None else None
        if batch is None:
            return
        field = ENDS.get(how, "discarded")
        s = batch.status
        batch.status = dataclasses.replace(s, pending=s.pending - 1, **{field: getattr(s, field) + 1})
        if field in ("dead", "cancelled"):
            batch.failures.append(job_id)
        if field == "dead":
            self._batch_fire(batch, "death")
        self._batch_check(batch)

    def _batch_check(self, batch: _Batch) -> bool:
        """Complete a closed batch with nothing pending (once)."""
        s = batch.status
        if s.complete or not s.closed or s.pending > 0:
            return False
        batch.status = dataclasses.replace(s, completed_ts=self.clock())
        self._batch_fire(batch, "complete")
        if batch.status.success:
            self._batch_fire(batch, "success")
        return True

    def _batch_fire(self, batch: _Batch, event: str) -> None:
        template = batch.callbacks.get(event)
        if template is None or event in batch.fired:
            return
        batch.fired.add(event)
        now = self.clock()
        env = fired(template, fired_status(batch.status, event, now), now)
        self._store(env, env.encode(), now)
