"""Simulated interruptions for continuations (docs/continuations.md, "Testing"): what a
stopping worker does to a job with steps, without a worker.

    with perform_enqueued_jobs(), interrupt_jobs(at_checkpoint=3) as interrupts:
        ImportJob.perform_later(import_)
    assert interrupts.interruptions[0].cursor == 3

The test adapter runs jobs in the caller; inside the block, a job reaching the chosen
interruption point is interrupted exactly as on a stopping worker (``JobInterrupted`` from the
checkpoint, its progress kept, not an attempt), then resumed at once from that progress, so the
test sees both the interruption and the resumption in one call.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from ..job import Job


@dataclasses.dataclass
class Interruption:
    job_id: str
    job: str                 # the job's registered name
    step: str | None         # the step it was interrupted in (None: between steps)
    cursor: Any              # that step's cursor when interrupted
    after_step: str | None   # between steps: the step that had just finished


class interrupt_jobs(contextlib.ContextDecorator):
    """Interrupt jobs run by the test adapter inside the block: at their ``at_checkpoint``-th
    ``step.checkpoint()`` of a run (counted from 1 in each run; only in ``step`` when given),
    or, with ``after_step``, at the start of the step following that one. Each job is
    interrupted at most ``times`` times (None: whenever it gets there; a job that never gets
    further is stopped after 100 runs). ``job``: only jobs of that class. The context
    manager's value records each :class:`Interruption` in ``interruptions``."""

    def __init__(self, *, at_checkpoint: int | None = None, after_step: str | None = None, step: str | None = None,
                 job: type[Job] | None = None, times: int | None = 1):
        if (at_checkpoint is None) == (after_step is None):
            raise TypeError("interrupt_jobs() takes at_checkpoint=N or after_step='name' (one of them).")
        if at_checkpoint is not None and (not isinstance(at_checkpoint, int) or at_checkpoint < 1):
            raise ValueError(f"at_checkpoint counts checkpoints from 1, got {at_checkpoint!r}.")
        self.at_checkpoint, self.after_step, self.step, self.job, self.times = at_checkpoint, after_step, step, job, times
        self.interruptions: list[Interruption] = []
        self._counts: dict[str, int] = {}

    def __enter__(self) -> "interrupt_jobs":
        from . import current_test_adapter
        self.adapter = current_test_adapter()
        self.adapter.interrupters.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.adapter.interrupters.remove(self)

    def fires(self, continuation) -> bool:
        """Whether the run at this interruption point is to be interrupted (recorded if so)."""
        job = continuation.job
        if self.job is not None and not isinstance(job, self.job):
            return False
        if self.times is not None and self._counts.get(job.job_id, 0) >= self.times:
            return False
        current = continuation.current
        if self.at_checkpoint is not None:
            hit = (continuation.point == "checkpoint" and continuation.checkpoints == self.at_checkpoint
                   and (self.step is None or (current is not None and current[0] == self.step)))
        else:
            hit = (continuation.point == "step" and bool(continuation.completed)
                   and continuation.completed[-1] == self.after_step)
        if hit:
            self._counts[job.job_id] = self._counts.get(job.job_id, 0) + 1
            inside = current is not None and continuation.point == "checkpoint"
            self.interruptions.append(Interruption(
                job.job_id, type(job).job_name, current[0] if inside else None, current[1] if inside else None,
                None if inside else continuation.completed[-1]))
        return hit
