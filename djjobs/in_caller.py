"""Run a job in its caller: ``perform_now``/``aperform_now``, the inline adapter, the test adapter.

One decision after each run, shared by the sync and async runners (:func:`caller_step`): a
success, discard or cancellation ends the run; a failure for good re-raises the job's error;
a retry or reschedule is enqueued for later (``retry_later``: perform_now, after the
caller's transaction commits, as perform_later would) or runs again at once, ignoring the
wait (inline, tests), at most ``MAX_IN_CALLER_RUNS`` times in a row.
"""
from __future__ import annotations

from typing import Any

from . import registry
from .envelope import Envelope
from .execution import CANCELLED, DEAD, DISCARDED, SUCCEEDED, Outcome, execute
from .run_context import RunContext

MAX_IN_CALLER_RUNS = 100
AGAIN, LATER, DONE = "again", "later", "done"


def perform_in_caller(envelope: Envelope, *, retry_later: bool) -> Any:
    """Run a job in the calling thread (``perform_now``, the inline adapter, test helpers).

    ``retry_later=True`` (perform_now): a retry or reschedule is enqueued through
    the configured adapter for later. ``False`` (inline): it runs again at once,
    ignoring the wait. Failing for good re-raises the job's exception. An async job runs
    on an event loop of its own; on a thread whose event loop is running, that is refused
    with what to do instead (``await aperform_now``).
    """
    return run_in_caller(envelope, retry_later=retry_later)[0]


def run_in_caller(envelope: Envelope, *, retry_later: bool, context: RunContext | None = None) -> tuple[Any, str]:
    """:func:`perform_in_caller`, returning (result, the last run's outcome kind). An interrupted
    run (``context`` says the runner is stopping: the test helpers) resumes as a retry does."""
    for _ in range(MAX_IN_CALLER_RUNS):
        step = caller_step(execute(envelope, context=context), retry_later)
        if step[0] == AGAIN:
            envelope = step[1]
        elif step[0] == LATER:
            store_later(step[1])
            return None, step[2]
        else:
            return step[1], step[2]
    raise too_many_runs(envelope)


async def aperform_in_caller(envelope: Envelope, *, retry_later: bool) -> Any:
    """:func:`perform_in_caller` from async code: an async job runs on the running event loop,
    a sync job in a thread (Django's thread-sensitive one, as the async ORM's queries); a
    retry is enqueued from a thread too, so the loop never blocks."""
    from asgiref.sync import sync_to_async
    from .execution_async import aexecute
    from .job_async import in_thread
    job_class = registry.lookup(envelope.job)
    for _ in range(MAX_IN_CALLER_RUNS):
        if job_class is not None and job_class.is_async:
            outcome = await aexecute(envelope)
        else:
            outcome = await sync_to_async(execute, thread_sensitive=True)(envelope)
        step = caller_step(outcome, retry_later)
        if step[0] == AGAIN:
            envelope = step[1]
        elif step[0] == LATER:
            await in_thread(store_later, step[1])
            return None
        else:
            return step[1]
    raise too_many_runs(envelope)


def caller_step(outcome: Outcome, retry_later: bool) -> tuple:
    """What an in-caller run does after ``outcome``: (DONE, result, kind); (LATER, envelope
    to enqueue, kind) when a retry is stored for later; (AGAIN, envelope) to run it again
    at once. A failure for good raises its error."""
    if outcome.kind in (SUCCEEDED, DISCARDED, CANCELLED):
        return DONE, outcome.result, outcome.kind
    if outcome.kind == DEAD:
        raise outcome.error
    if retry_later:
        return LATER, outcome.envelope, outcome.kind
    return AGAIN, outcome.envelope.copy(run_at=None)


def store_later(envelope: Envelope) -> None:
    """Enqueue a retry of an in-caller run, like perform_later: after the caller's transaction commits."""
    from .transaction import submit_envelopes
    job_class = registry.lookup(envelope.job)
    submit_envelopes([envelope], after_commit=getattr(job_class, "enqueue_after_commit", True))


def too_many_runs(envelope: Envelope) -> RuntimeError:
    return RuntimeError(f"{envelope.describe()} was retried, rescheduled or interrupted {MAX_IN_CALLER_RUNS} times "
                        "in a row in the caller; in-caller runs ignore waits, so use a real adapter for this job.")
