"""The ``test`` adapter: records every enqueue and runs nothing, unless asked.

Jobs are stored like the memory adapter (so the inspection methods and a
drain work), and every enqueued envelope is also kept in ``enqueued`` in
order, for assertions. Inside ``perform_enqueued_jobs()`` (``performing`` > 0)
a job runs at enqueue time in the caller instead, retries at once, and a job
that fails for good re-raises its exception. Unique jobs are honoured in both modes: a
job whose key a stored job holds is neither stored nor run (``enqueued`` records only
the jobs that were stored or run). Batches are honoured in both modes: a drain runs each
callback once, as a worker would; inside ``perform_enqueued_jobs()`` a job of a batch is
settled as its run ends and a callback runs in the caller of the step that fires it. A job
with steps runs them (djjobs/continuations.py); inside :func:`djjobs.testing.interrupt_jobs`
its runs are interrupted as on a stopping worker, and resume at once from their progress.
"""
from __future__ import annotations

import threading
from typing import Sequence

from ..envelope import Envelope
from .base import batch_of, unique_lock, with_prerequisites_last
from .memory import MemoryAdapter


class TestAdapter(MemoryAdapter):
    __test__ = False  # not a pytest test class
    name = "test"

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.enqueued: list[Envelope] = []
        self.performed: list[Envelope] = []
        self.performing = 0
        self.interrupters: list = []  # djjobs.testing.interrupt_jobs blocks open now
        self._record_lock = threading.Lock()

    def enqueue(self, envelope: Envelope) -> str | None:
        self.encode(envelope)
        if self.performing:
            lock = unique_lock(envelope)
            with self._cond:
                holder = self._holder(lock.key, self.clock()) if lock is not None else None
            if holder is not None and lock.conflict != "replace":
                return holder
            self._note(envelope)
            if batch_of(envelope) is not None:
                self._run_in_batch(envelope, self.run)
            else:
                self.run(envelope)
            return None
        holder = super().enqueue(envelope)
        if holder is None:
            self._note(envelope)
        return holder

    def _note(self, envelope: Envelope) -> None:
        with self._record_lock:
            self.enqueued.append(envelope)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        for env in envelopes:  # all or nothing, like the other adapters: refuse a bad batch before storing any
            self.encode(env)
        with self._cond:
            self._batch_admit(envelopes)
        duplicates = {}
        for env in with_prerequisites_last(envelopes):
            holder = self.enqueue(env)
            if holder is not None:
                duplicates[env.job_id] = holder
        return duplicates

    def run(self, envelope: Envelope) -> str:
        """Run in the caller; returns the outcome kind (succeeded, discarded, cancelled)."""
        from ..in_caller import run_in_caller
        with self._record_lock:
            self.performed.append(envelope)
        return run_in_caller(envelope.copy(run_at=None), retry_later=False, context=self._run_context())[1]

    def _run_context(self):
        """None (nothing asked of the run), or inside ``interrupt_jobs``: a context whose
        "stopping" is true where one of those blocks interrupts the run."""
        if not self.interrupters:
            return None
        from ..run_context import RunContext
        context = RunContext()

        def stopping() -> bool:
            cont = context.continuation
            return cont is not None and any(i.fires(cont) for i in list(self.interrupters))
        context.stopping = stopping
        return context

    def drain(self, *, include_scheduled: bool = True, max_rounds: int = 100) -> int:
        """Run every stored job (and the jobs they enqueue) in the caller; returns how many ran."""
        before = len(self.performed)
        for _ in range(max_rounds):
            if include_scheduled:
                with self._cond:
                    for rec in self._recs.values():
                        if rec.state in ("scheduled", "retry"):
                            rec.at = 0.0
            claims = self.fetch(None, 10**9, 0, "test-drain")
            if not claims:
                return len(self.performed) - before
            # One job at a time, each forgotten once it has run; the jobs they enqueue are
            # stored and run in the next round (a scheduled one only with include_scheduled).
            for i, claim in enumerate(claims):
                try:
                    kind = self.run(claim.envelope)
                except BaseException:
                    self.kill(claim, None)  # failed for good: dead, as a worker would store it
                    self.release(claims[i + 1:])  # not run: back to their queues, for the next drain
                    raise
                if kind == "succeeded":
                    self.complete([claim])
                elif kind == "cancelled":
                    self.cancel_run(claim, claim.envelope)
                else:
                    self.discard(claim)
        raise RuntimeError(f"Jobs kept enqueueing jobs for {max_rounds} rounds; stopping the drain.")

    def _store(self, env: Envelope, raw: bytes, now: float) -> str | None:
        if env.meta and "batch_event" in env.meta:  # a batch callback firing: recorded (and run here, performing)
            self._note(env)
            if self.performing:
                self.run(env)
                return None
        return super()._store(env, raw, now)

    def clear(self, queue: str | None = None) -> int:
        if queue is not None:
            return super().clear(queue)
        with self._cond:
            n = len(self._recs)
            self._recs.clear()
            self._ready.clear()
            self._batches.clear()
            self._bjobs.clear()
        with self._record_lock:
            self.enqueued.clear()
            self.performed.clear()
        return n
