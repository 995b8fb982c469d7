"""Prerequisites in the memory adapter (the contract: ``adapters/base.py``; the rules:
``djjobs/prerequisites.py``), under the store's lock: a waiting job keeps the set of its
prerequisites not ended yet, and each prerequisite the list of jobs waiting for it."""
from __future__ import annotations

from ..envelope import Envelope
from ..prerequisites import failure, of

ENDED_BADLY = ("dead", "cancelled")
MAX_CASCADE = 100_000


class MemoryPrerequisites:
    """Mixed into MemoryAdapter (it uses ``_recs``, ``_children``, ``_pending``,
    ``_become_ready``, ``_cond`` and ``clock``)."""

    def _waits(self, env: Envelope, rec, now: float) -> bool:
        """A job with prerequisites, just stored: True if it now waits, or its policy ended it
        (dead, forgotten); False if every prerequisite ended well (the caller queues it)."""
        declared = of(env.meta)
        if declared is None:
            return False
        ids, policy = declared
        pending, bad = set(), None
        for parent in ids:
            prec = self._recs.get(parent)
            if prec is None:
                continue  # finished, or never stored here: counts as succeeded
            if prec.state in ENDED_BADLY:
                bad = bad or (parent, prec.state)
            else:
                pending.add(parent)
        rec.at = env.run_at  # its own run time, for when the wait is over
        if bad is not None and policy != "run":
            self._end_waiting(env.job_id, rec, policy, *bad, now)
            return True
        if not pending:
            return False
        rec.state, rec.seq = "waiting", next(self._seq)
        self._pending[env.job_id] = (pending, policy)
        for parent in pending:
            self._children.setdefault(parent, []).append(env.job_id)
        return True

    def _parent_ended(self, job_id: str, how: str) -> None:
        """``job_id`` ended (``how`` "" for a success): settle the jobs waiting for it, and down
        the chain those it ends badly; and each of them in its batch (memory_batches.py)."""
        todo = [(job_id, how)]
        for _ in range(MAX_CASCADE):
            if not todo:
                return
            parent, how = todo.pop()
            self._batch_ended(parent, how)  # each job ended here, the first and the cascade's
            for child in self._children.pop(parent, ()):
                pending, policy = self._pending.get(child, (None, ""))
                rec = self._recs.get(child)
                if pending is None or parent not in pending or rec is None or rec.state != "waiting":
                    continue
                pending.discard(parent)
                if how and policy != "run":
                    todo.append((child, self._end_waiting(child, rec, policy, parent, how, self.clock())))
                elif not pending:
                    del self._pending[child]
                    if rec.at is not None and rec.at > self.clock():
                        rec.state = "scheduled"
                        self._cond.notify_all()
                    else:
                        self._become_ready(child, rec)

    def _end_waiting(self, job_id: str, rec, policy: str, parent: str, how: str, now: float) -> str:
        """A prerequisite ended badly and the policy is "dead" or "discard": returns how the
        job itself ended, for those waiting for it."""
        self._pending.pop(job_id, None)
        if policy == "discard":
            self._recs.pop(job_id, None)
            return "discarded"
        rec.state, rec.at, rec.error = "dead", now, failure(parent, how, now)
        return "dead"
