"""Run one claimed job and carry out its outcome: the one place where an
:class:`~djjobs.execution.Outcome` becomes an adapter call.

Database connections are checked before and after each job, as Django does
per request, so a worker thread never reuses a broken or expired connection
and never holds a transaction open between jobs.
"""
from __future__ import annotations

import logging

from django.db import close_old_connections

from .. import signals
from ..adapters.base import Adapter, Claim
from ..execution import DEAD, DISCARDED, RESCHEDULED, RETRY, SUCCEEDED, Outcome, error_info, execute

logger = logging.getLogger("djjobs")


def process(adapter: Adapter, claim: Claim) -> Outcome | None:
    """Execute ``claim`` and report its outcome to ``adapter``. Never raises for a
    job's failure; a poison payload goes to the dead set. The outcome is returned
    released (:meth:`~djjobs.execution.Outcome.release`): its kind and envelope stay,
    the run's objects (job, result, the error's frames) are let go once reported."""
    if claim.envelope is None:
        logger.error("Undecodable payload moved to the dead set (%s): %r", claim.error, claim.raw[:200])
        adapter.kill(claim, None)
        signals.job_failed.send_robust(sender=None, job=None, envelope=None, exception=claim.error)
        return None
    close_old_connections()
    try:
        outcome = execute(claim.envelope, contain_exits=True)
    finally:
        close_old_connections()
    try:
        report(adapter, claim, outcome)
    finally:
        outcome.release()
    return outcome


def report(adapter: Adapter, claim: Claim, outcome: Outcome) -> None:
    kind = outcome.kind
    if kind in (SUCCEEDED, DISCARDED):
        adapter.complete([claim])
    elif kind == RETRY:
        adapter.retry(claim, outcome.envelope, outcome.run_at)
    elif kind == RESCHEDULED:
        adapter.reschedule(claim, outcome.envelope, outcome.run_at)
    elif kind == DEAD:
        adapter.kill(claim, outcome.envelope)
    else:  # pragma: no cover - execute() returns only the kinds above
        adapter.kill(claim, outcome.envelope.copy(error=error_info(RuntimeError(f"unknown outcome {kind}"))))
