"""Cancellation in the memory adapter (the contract: ``adapters/base.py``): a waiting job
ends ``cancelled`` under the store's lock; a running one gets a request that the step storing
its outcome honours (``MemoryAdapter._replace``, ``release``, lease recovery)."""
from __future__ import annotations

from typing import Iterable

from ..envelope import Envelope
from .base import CANCELLABLE, Claim


class MemoryCancel:
    """Mixed into MemoryAdapter (it uses ``_cond``, ``_recs``, ``_cancels``, ``_ended``,
    ``_owned``, ``_replace``, ``_trim_dead`` and ``clock``)."""

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        done: dict[str, str] = {}
        with self._cond:
            now = self.clock()
            for job_id in job_ids:
                rec = self._recs.get(job_id)
                if rec is None or job_id in done:
                    continue
                if rec.state in CANCELLABLE:
                    self._end_cancelled(job_id, rec, now)
                    done[job_id] = "cancelled"
                elif rec.state == "running":
                    self._cancels.setdefault(job_id, now)
                    done[job_id] = "cancelling"
            if "cancelled" in done.values():
                self._trim_dead("cancelled")
        return done

    def cancel_requested(self, job_id: str) -> bool:
        with self._cond:
            return job_id in self._cancels

    def cancel_run(self, claim: Claim, envelope: Envelope) -> None:
        with self._cond:
            if self._replace(claim, envelope, "cancelled", self.clock()):
                self._trim_dead("cancelled")

    # --- internals (caller holds the lock) ------------------------------------
    def _end_cancelled(self, job_id: str, rec, now: float) -> None:
        rec.state, rec.at, rec.token, rec.worker_id = "cancelled", now, None, None
        self._ended(job_id, rec, "cancelled")
        self._cond.notify_all()

    def _cancel_instead(self, job_id: str, rec) -> bool:
        """A running job about to go back to its queue (released, or recovered after a worker
        death): cancelled instead if its cancellation was asked. Returns whether it was."""
        if self._cancels.pop(job_id, None) is None:
            return False
        self._end_cancelled(job_id, rec, self.clock())
        self._trim_dead("cancelled")
        return True
