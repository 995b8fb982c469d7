"""Run one claimed job and carry out its outcome: the one place where an
:class:`~djjobs.execution.Outcome` becomes an adapter call.

Database connections are checked before and after each job, as Django does
per request, so a worker thread never reuses a broken or expired connection
and never holds a transaction open between jobs.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from django.db import close_old_connections

from .. import registry, signals
from ..adapters.base import Adapter, Claim, encodes, stored_error
from ..continuations import with_progress
from ..errors import PayloadError
from ..execution import (CANCELLED, DEAD, DISCARDED, INTERRUPTED, RESCHEDULED, RETRY, SUCCEEDED, Outcome, error_info,
                         execute)
from ..ratelimits import start_wait
from ..run_context import RunContext

logger = logging.getLogger("djjobs")
#: how often a run's ``self.cancelled`` asks storage at most
CANCEL_CHECK_SECONDS = 1.0


class CancelProbe:
    """A run's cancel check (``Job.cancelled``): asks the adapter whether the job has a cancel
    request at most every CANCEL_CHECK_SECONDS, and stays true once it has. A job that never
    reads ``self.cancelled`` costs nothing. Storage unreachable reads as not cancelled (the
    request stays stored, and the step storing the outcome still honours it)."""

    __slots__ = ("adapter", "job_id", "asked_at", "seen")

    def __init__(self, adapter: Adapter, job_id: str):
        self.adapter, self.job_id, self.asked_at, self.seen = adapter, job_id, -CANCEL_CHECK_SECONDS, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.seen and now - self.asked_at >= CANCEL_CHECK_SECONDS:
            self.asked_at = now
            try:
                self.seen = bool(self.adapter.cancel_requested(self.job_id))
            except Exception as exc:
                logger.warning("Could not check whether job %s was cancelled (%s: %s)", self.job_id,
                               type(exc).__name__, exc)
        return self.seen


def run_context(adapter: Adapter, claim: Claim, stopping: Callable[[], bool] | None = None) -> RunContext:
    """The context of one claimed run: its cancel probe, whether its worker is ``stopping``,
    and saving its progress as the claimed envelope (``executions`` as claimed: lease
    recovery counts the run that dies) plus the progress, fenced by the claim."""
    def save_progress(progress: dict) -> bool:
        return adapter.save_progress(claim, with_progress(claim.envelope, progress))
    return RunContext(cancelled=CancelProbe(adapter, claim.envelope.job_id), stopping=stopping,
                      save_progress=save_progress)


def process(adapter: Adapter, claim: Claim, stopping: Callable[[], bool] | None = None) -> Outcome | None:
    """Execute ``claim`` and report its outcome to ``adapter``. Never raises for a
    job's failure; a poison payload goes to the dead set. The outcome is returned
    released (:meth:`~djjobs.execution.Outcome.release`): its kind and envelope stay,
    the run's objects (job, result, the error's frames) are let go once reported.
    ``stopping``: whether the runner is stopping (continuations are then interrupted)."""
    if claim.envelope is None:
        kill_undecodable(adapter, claim)
        return None
    if rate_limited(adapter, claim):
        return None
    close_old_connections()
    try:
        outcome = execute(claim.envelope, contain_exits=True, context=run_context(adapter, claim, stopping))
    finally:
        close_old_connections()
    try:
        report(adapter, claim, outcome)
    finally:
        outcome.release()
    return outcome


def rate_limited(adapter: Adapter, claim: Claim) -> bool:
    """Count this start under its class' rate limit, if it has one; over the limit,
    reschedule the job for the earliest moment the limit allows, as it was stored (not
    started: no execution, no attempt) and return True. A declaration that is wrong lets
    the run go ahead (the system check names it)."""
    job_class = registry.lookup(claim.envelope.job)
    if job_class is None or job_class.rate_limit is None:
        return False
    try:
        wait = start_wait(adapter, claim.envelope, job_class)
    except ValueError:
        return False
    if wait <= 0:
        return False
    run_at = time.time() + wait
    env = claim.envelope.copy(run_at=run_at)
    adapter.reschedule(claim, env, run_at)
    logger.info("rescheduled %s id=%s queue=%s (rate limit %s: runs again in %.3f s)", env.job, env.job_id, env.queue,
                job_class.rate_limit, wait)
    return True


def kill_undecodable(adapter: Adapter, claim: Claim) -> None:
    """A claimed payload that does not decode: to the dead set byte-exact, the decoding
    error beside it. The log names the job by its lease, never by the payload's bytes
    (they may hold secrets, and LOG_ARGUMENTS does not apply to what cannot be read)."""
    error = claim.error or PayloadError("undecodable payload")
    logger.error("Undecodable payload (claim %s, %d bytes) moved to the dead set: %s", claim.key, len(claim.raw),
                 error)
    adapter.kill(claim, None, stored_error(error, "Its payload does not decode", at=time.time()))
    signals.job_failed.send_robust(sender=None, job=None, envelope=None, exception=error)


def report(adapter: Adapter, claim: Claim, outcome: Outcome) -> None:
    """Carry out ``outcome``. An outcome whose envelope cannot be encoded (a payload nested
    deeper than the encoder writes, say) sends the job to the dead set with its stored bytes
    unchanged and that error beside them, instead of failing the report again and again."""
    kind = outcome.kind
    if kind == SUCCEEDED:
        adapter.complete([claim])
        return
    if kind == DISCARDED:  # not a success for the jobs waiting for it (prerequisites)
        adapter.discard(claim)
        return
    try:
        _store(adapter, claim, outcome)
    except Exception:
        # Every adapter encodes the envelope before it writes anything: when that is what
        # failed, nothing was stored. (Checked only after a failure: no second encoding.)
        problem = encodes(outcome.envelope)
        if problem is None:
            raise
        logger.error("%s: its outcome (%s) cannot be stored (%s: %s); moved to the dead set as it was stored",
                     outcome.envelope.describe(), kind, type(problem).__name__, problem)
        adapter.kill(claim, None, stored_error(problem, f"Its outcome ({kind}) cannot be stored; payload kept as "
                                               "it was", at=time.time()))


def _store(adapter: Adapter, claim: Claim, outcome: Outcome) -> None:
    kind = outcome.kind
    if kind == RETRY:
        adapter.retry(claim, outcome.envelope, outcome.run_at)
    elif kind == RESCHEDULED:
        adapter.reschedule(claim, outcome.envelope, outcome.run_at)
    elif kind == DEAD:
        adapter.kill(claim, outcome.envelope)
    elif kind == CANCELLED:
        adapter.cancel_run(claim, outcome.envelope)
    elif kind == INTERRUPTED:
        # Its progress first, then back to the front of its queue. Dying in between leaves it
        # running with its progress stored: lease recovery resumes it from there.
        if adapter.save_progress(claim, outcome.envelope):
            adapter.release([claim])
    else:  # pragma: no cover - execute() returns only the kinds above
        adapter.kill(claim, outcome.envelope.copy(error=error_info(RuntimeError(f"unknown outcome {kind}"))))
