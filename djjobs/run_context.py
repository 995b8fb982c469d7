"""What a run may ask of whoever runs it: the one way run context reaches
:func:`djjobs.execution.execute` (and from there the job).

The worker builds one per claim (:func:`djjobs.worker.processor.run_context`); the test
adapter builds its own (interruptions simulated by :func:`djjobs.testing.interrupt_jobs`);
``perform_now`` and the inline adapter pass none, so a job run there is never cancelled,
never interrupted, and saves no progress.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(slots=True)
class RunContext:
    #: whether the job's cancellation was asked (``Job.cancelled``); cheap to call often
    cancelled: Callable[[], bool] | None = None
    #: whether the process running the job is stopping (SIGTERM, quiet): a continuation's
    #: checkpoint then interrupts the job (``JobInterrupted``); cheap to call often
    stopping: Callable[[], bool] | None = None
    #: store the run's progress (``envelope.meta["progress"]``) durably, fenced by the run's
    #: claim; returns False when the claim is no longer held (lease recovered)
    save_progress: Callable[[dict], bool] | None = None
    #: the run's :class:`~djjobs.continuations.Continuation`, once its job entered a step
    #: (read by the test helpers that simulate interruptions)
    continuation: Any = None

    def is_cancelled(self) -> bool:
        return self.cancelled is not None and bool(self.cancelled())

    def is_stopping(self) -> bool:
        return self.stopping is not None and bool(self.stopping())
