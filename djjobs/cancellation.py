"""Cancelling jobs: ``djjobs.cancel(job_id)``.

A job that has not started (ready, scheduled, retrying, blocked) is cancelled in one
atomic step of the adapter, so it never runs: a worker claimed it before, or never will.
A running job is asked to stop: its ``self.cancelled`` becomes true (and a continuation's
``step.checkpoint()`` raises :class:`~djjobs.errors.JobCancelled`), and whatever it does
next short of succeeding or failing for good (stopping for the request, a retry, a
reschedule, a release at shutdown, recovery after its worker died) ends it ``cancelled``.
A cancelled job is terminal: never retried, kept for inspection like the dead set.
"""
from __future__ import annotations

from typing import Iterable

from . import registry, signals
from .adapters import get_adapter

CANCELLED, CANCELLING = "cancelled", "cancelling"


def cancel(job_id: str) -> str | None:
    """Cancel one job. Returns "cancelled" (it will not run), "cancelling" (it is running and
    was asked to stop), or None (no such job waiting or running: finished, dead, cancelled
    already, or unknown)."""
    if not isinstance(job_id, str):
        raise TypeError(f"cancel() takes a job id (str), got {job_id!r}; pass job.job_id for a Job instance.")
    return cancel_many([job_id]).get(job_id)


def cancel_many(job_ids: Iterable[str]) -> dict[str, str]:
    """Cancel several jobs: {job id: "cancelled" or "cancelling"} for those found waiting or
    running (see :func:`cancel`). Sends ``job_cancelled`` for each one cancelled at once."""
    ids = list(dict.fromkeys(job_ids))
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise TypeError(f"cancel_many() takes job ids (str), got {bad[0]!r}.")
    adapter = get_adapter()
    done = adapter.cancel(ids)
    if signals.job_cancelled.receivers:
        for job_id, what in done.items():
            record = adapter.get(job_id) if what == CANCELLED else None
            env = record.envelope if record is not None else None
            signals.job_cancelled.send_robust(sender=registry.lookup(env.job) if env else None, job=None,
                                              job_id=job_id, envelope=env)
    return done
