"""Run one async job (``async def perform``) and decide its outcome: the async counterpart
of :func:`djjobs.execution.execute`. Pure of storage, like it.

The run is the same as a sync one, awaited: the outcome of a run that raised is decided by
the same code (:func:`djjobs.execution.ended`: retry_on/discard_on, retry_job, cancellation),
and so are the logs, the signals and ``after_outcome``. What differs:

- model arguments are loaded through ``sync_to_async`` (Django's thread-sensitive thread, as
  the async ORM does), so the event loop never waits on a database query;
- hooks may be coroutines (awaited); plain ``def`` hooks are called as on a sync job;
- ``timeout``: the run's task is cancelled at the deadline and the job fails with
  :class:`~djjobs.errors.JobTimeout` (retry rules apply), as a sync job does;
- a cancellation from outside (a worker stopping after its shutdown timeout) is not an
  outcome: ``asyncio.CancelledError`` propagates, and the runner hands the job back.

Signal receivers and ``after_outcome`` of an async job run on the event loop: they must
not block (a receiver that queries the database raises Django's SynchronousOnlyOperation).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Coroutine

from asgiref.sync import async_to_sync, sync_to_async

from . import signals
from .arguments import TAG
from .envelope import Envelope
from .errors import JobTimeout
from .execution import Outcome, _send, begin, ended, succeeded
from .job import Job
from .run_context import RunContext

logger = logging.getLogger("djjobs")


async def aexecute(envelope: Envelope, *, now: float | None = None, contain_exits: bool = False,
                   context: RunContext | None = None, timeout: float | None = None) -> Outcome:
    """Run the async job once on the running event loop; see the module docstring."""
    env, started, job = begin(envelope, context)
    if isinstance(job, Outcome):
        return job
    deadline = None
    try:
        if references_models(env.args, env.kwargs):
            await sync_to_async(job.load_arguments, thread_sensitive=True)()
        else:
            job.load_arguments()
        _send(signals.job_started, job)
        if timeout:
            deadline = asyncio.timeout(timeout)
            async with deadline:
                result = await _around(job)
        else:
            result = await _around(job)
    except BaseException as exc:
        if deadline is not None and deadline.expired() and isinstance(exc, TimeoutError):
            exc = _timed_out(env, timeout, exc)
        outcome = ended(job, env, envelope, exc, started, now, contain_exits)
    else:
        outcome = succeeded(job, env, result, started)
    await _await_pending_hooks(job)
    return outcome


def _timed_out(env: Envelope, timeout: float, cause: BaseException) -> JobTimeout:
    error = JobTimeout(f"{env.describe()} exceeded its timeout of {timeout:g} s; its task was cancelled")
    error.__cause__ = cause
    return error.with_traceback(cause.__traceback__)


async def _around(job: Job) -> Any:
    """``around_perform`` wrapping before/perform/after; a plain ``def around_perform``
    returns ``run()``, the coroutine, which is awaited here."""
    return await _maybe(job.around_perform(lambda: _arun(job)))


async def _arun(job: Job) -> Any:
    await _maybe(job.before_perform())
    result = await job.perform(*job.arguments, **job.kwargs)
    await _maybe(job.after_perform())
    return result


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _await_pending_hooks(job: Job) -> None:
    """The coroutine outcome hooks (after_discard, after_outcome) the shared outcome code
    called (djjobs/execution.py ``_call_hook``): awaited now; their errors are logged."""
    pending = job.__dict__.pop("_pending_hooks", None)
    for name, awaitable in pending or ():
        try:
            await awaitable
        except Exception:
            logger.exception("%s.%s raised; the job's outcome is unchanged", type(job).__qualname__, name)


def references_models(args: Any, kwargs: Any) -> bool:
    """Whether serialized arguments hold a model reference (loading them queries the database)."""
    todo = [args, kwargs]
    while todo:
        value = todo.pop()
        if isinstance(value, list):
            todo += value
        elif isinstance(value, dict):
            if value.get(TAG) == "gid":
                return True
            todo += value.values()
    return False


def run_coroutine(coroutine: Coroutine, envelope: Envelope) -> Outcome:
    """Run an async job's coroutine to its end from sync code (perform_now, the inline,
    async-thread and test adapters), on an event loop of its own (asgiref ``async_to_sync``:
    its ``sync_to_async(thread_sensitive=True)`` calls, the async ORM's, come back to this
    thread, so they see this thread's database connection and transaction). Refused on a
    thread whose event loop is running: waiting there would block that loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(_awaited)(coroutine)
    coroutine.close()
    name = envelope.job.rsplit(".", 1)[-1]
    raise RuntimeError(
        f"{envelope.describe()} is an async job (`async def perform`), and this thread is running an event loop: "
        f"running the job to its end here would block that loop. From async code use `await {name}.aperform_now(...)` "
        f"(or `await {name}.aperform_later(...)`, which enqueues it from a thread), not perform_now or perform_later.")


async def _awaited(coroutine: Coroutine) -> Any:
    return await coroutine
