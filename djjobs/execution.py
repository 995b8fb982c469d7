"""Run one envelope and decide its outcome. Pure of storage.

:func:`execute` never talks to an adapter: it returns an :class:`Outcome`
(succeeded, retry at T, rescheduled at T, discarded, dead, cancelled, interrupted) and the
caller (the worker's processor, or the in-caller runners of djjobs/in_caller.py) carries it out. What the run
may ask of its runner (cancelled? stopping? save progress) comes in one
:class:`~djjobs.run_context.RunContext`.

A continuation's progress (djjobs/continuations.py) goes into the envelope of every outcome
that stores the job again (retry, rescheduled, dead, cancelled, interrupted), so a retry
resumes where the failed run stopped. An interrupted run is stored as it was claimed
(``executions`` and exception counts unchanged: not an attempt), plus its progress.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import time
import traceback
from typing import Any

from . import conf, handlers, registry, signals
from .envelope import Envelope
from .continuations import PROGRESS, progress_of, with_progress
from .errors import DjJobsError, JobCancelled, JobInterrupted
from .job import Job, Reschedule
from .run_context import RunContext

logger = logging.getLogger("djjobs")

SUCCEEDED, RETRY, RESCHEDULED, DISCARDED, DEAD = "succeeded", "retry", "rescheduled", "discarded", "dead"
CANCELLED, INTERRUPTED = "cancelled", "interrupted"


@dataclasses.dataclass
class Outcome:
    kind: str
    envelope: Envelope              # the envelope to store next (executions and errors updated)
    job: Job | None = None
    run_at: float | None = None     # for RETRY / RESCHEDULED (an INTERRUPTED job is ready at once)
    error: BaseException | None = None
    result: Any = None
    duration: float = 0.0

    def release(self) -> None:
        """Let go of the run's objects once the outcome has been carried out (a worker
        calls this after reporting it). A failed run's exception holds its traceback,
        whose frames hold every local of the run, and those frames reach back (``f_back``)
        to the caller's frame that holds this outcome: a reference cycle that only the
        cyclic GC frees, so a job that loaded 1 GB and failed kept it until a collection
        happened to run. Afterwards the outcome keeps its kind, envelope, run_at and
        duration; its error's traceback still formats (file and line) but holds no locals."""
        if self.error is not None:  # (every job calls this: a success has nothing to clear)
            clear_frames(self.error)
        self.error = self.job = self.result = None


def clear_frames(exc: BaseException | None) -> None:
    """Drop the locals of every finished frame in ``exc``'s traceback and in those of
    the exceptions chained to it (``__cause__``, ``__context__``, an exception group's
    members), so that holding the exception no longer holds what the run allocated."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 1000:
        exc = todo.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        todo += [exc.__cause__, exc.__context__]
        if isinstance(exc, BaseExceptionGroup):
            todo += exc.exceptions


def error_info(exc: BaseException, *, at: float | None = None) -> dict:
    """The error as stored with a retrying or dead job. Never raises, and is always
    storable: an exception whose ``__str__`` fails is described by its class, and a lone
    surrogate (a file name that is not UTF-8, say), which JSON cannot carry, is escaped."""
    message = _storable(_text(exc))[:2000]
    try:
        trace = _storable("".join(traceback.format_exception(exc)))[-20000:]
    except Exception:
        trace = ""
    return {"class": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": message,
            "traceback": trace, "failed_at": at or time.time()}


def _storable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__qualname__}: str() failed>"


_EXITS = (SystemExit, KeyboardInterrupt)


def execute(envelope: Envelope, *, now: float | None = None, contain_exits: bool = False,
            context: RunContext | None = None) -> Outcome:
    """Run the job once. Exceptions from the job become outcomes. SystemExit and
    KeyboardInterrupt propagate (``perform_now`` in a script should exit), unless
    ``contain_exits`` (a worker's job thread): then they fail the job like any error,
    since a thread ended by one would be lost to the worker without a word.
    ``context``: what the run may ask of its runner (cancel check, stopping, saving
    progress); None for a run in the caller. An async job (``async def perform``) runs to
    its end on an event loop of its own (:func:`djjobs.execution_async.run_coroutine`):
    the inline, async-thread and test adapters and ``perform_now`` run it that way."""
    job_class = registry.lookup(envelope.job)
    if job_class is not None and job_class.is_async:
        from .execution_async import aexecute, run_coroutine
        return run_coroutine(aexecute(envelope, now=now, contain_exits=contain_exits, context=context), envelope)
    env, started, job = begin(envelope, context)
    if isinstance(job, Outcome):
        return job
    try:
        job.load_arguments()
        _send(signals.job_started, job)
        result = job.around_perform(lambda: _run(job))
    except BaseException as exc:
        return ended(job, env, envelope, exc, started, now, contain_exits)
    return _finish(Outcome(SUCCEEDED, env, job, result=result), started)


def begin(envelope: Envelope, context: RunContext | None) -> tuple[Envelope, float, "Job | Outcome"]:
    """The start of a run (shared by :func:`execute` and ``aexecute``): the envelope as
    started, the start time, and the Job instance, or the dead Outcome of a payload that
    names no registered class."""
    env = envelope.started()
    started = time.perf_counter()
    try:
        job = registry.resolve(env.job).from_envelope(env)
    except DjJobsError as exc:
        return env, started, _finish(Outcome(DEAD, env.copy(error=error_info(exc)), error=exc), started)
    if context is not None:
        job._context = context
    return env, started, job


def ended(job: Job, env: Envelope, claimed: Envelope, exc: BaseException, started: float, now: float | None,
          contain_exits: bool) -> Outcome:
    """The outcome of a run that raised ``exc`` (shared by :func:`execute` and ``aexecute``:
    every retry, discard, reschedule and cancel decision is made here). Re-raises what is
    not a job's outcome: an exit when not ``contain_exits``, and anything else not an
    Exception (an asyncio cancellation: the runner is stopping the run)."""
    if isinstance(exc, Reschedule):
        run_at = (now or time.time()) + exc.wait
        return _finish(Outcome(RESCHEDULED, _progressed(job, env.copy(run_at=run_at)), job, run_at), started)
    if isinstance(exc, JobCancelled):
        return _finish(Outcome(CANCELLED, _progressed(job, env), job, error=exc), started)
    if isinstance(exc, JobInterrupted):
        return _finish(Outcome(INTERRUPTED, _interrupted(job, claimed), job, error=exc), started)
    if isinstance(exc, Exception) or (contain_exits and isinstance(exc, _EXITS)):
        return _finish(_failure_or_dead(job, _progressed(job, env), exc, now or time.time()), started)
    raise exc


def succeeded(job: Job, env: Envelope, result: Any, started: float) -> Outcome:
    return _finish(Outcome(SUCCEEDED, env, job, result=result), started)


def _progressed(job: Job, env: Envelope) -> Envelope:
    """``env`` with the run's progress through its steps, if it entered any."""
    continuation = job._continuation
    return env if continuation is None else with_progress(env, continuation.progress())


def _interrupted(job: Job, claimed: Envelope) -> Envelope:
    """What an interrupted run stores: the envelope as it was claimed (this run was not an
    attempt), ready, with the run's progress and one more resumption."""
    continuation = job._continuation
    if continuation is not None:
        progress = continuation.progress(resumed=1)
    else:  # JobInterrupted raised outside any step: nothing new to keep but the count
        progress = dict(progress_of(claimed.meta) or {"completed": []})
        progress["resumptions"] = progress.get("resumptions", 0) + 1
    return with_progress(claimed.copy(run_at=None), progress)


def _failure_or_dead(job: Job, env: Envelope, exc: BaseException, now: float) -> Outcome:
    """:func:`_failure`, or the dead set naming what went wrong deciding it (a ``wait``
    callable or a retry handler that raised): the job's outcome is always stored."""
    try:
        return _failure(job, env, exc, now)
    except Exception as internal:
        logger.exception("Deciding the outcome of %s failed; it goes to the dead set", env.describe())
        info = error_info(exc, at=now)
        info["message"] = f"{info['message']} (then deciding its retry failed: {error_info(internal)['message']})"
        return Outcome(DEAD, env.copy(error=info), job, error=exc)


def _run(job: Job) -> Any:
    job.before_perform()
    result = job.perform(*job.arguments, **job.kwargs)
    job.after_perform()
    return result


def _failure(job: Job, env: Envelope, exc: BaseException, now: float) -> Outcome:
    key = handlers.matching_key(job, exc)
    if key is not None:
        env.exception_executions[key] = env.exception_executions.get(key, 0) + 1
    job.exception_executions = env.exception_executions
    env = env.copy(error=error_info(exc, at=now))
    decision = handlers.decide(job, exc)
    if decision.action == "retry":
        run_at = now + decision.delay
        env = env.copy(run_at=run_at, queue=decision.queue or env.queue,
                       priority=env.priority if decision.priority is None else decision.priority)
        return Outcome(RETRY, env, job, run_at, exc)
    if decision.action == "discard":
        _call_hook(job, job.after_discard, exc)
        return Outcome(DISCARDED, env, job, error=exc)
    if decision.handler is not None and decision.handler.on_exhausted is not None:
        try:
            decision.handler.on_exhausted(job, exc)
            _call_hook(job, job.after_discard, exc)
            return Outcome(DISCARDED, env, job, error=exc)
        except Exception as hook_exc:
            env = env.copy(error=error_info(hook_exc, at=now))
            return Outcome(DEAD, env, job, error=hook_exc)
    return Outcome(DEAD, env, job, error=exc)


def _finish(outcome: Outcome, started: float) -> Outcome:
    outcome.duration = time.perf_counter() - started
    job, env, exc = outcome.job, outcome.envelope, outcome.error
    if job is not None and type(job).after_outcome is not Job.after_outcome:
        _call_hook(job, job.after_outcome, outcome)
    if outcome.kind == SUCCEEDED:  # the hot path: build the log line only when it is logged
        if logger.isEnabledFor(logging.INFO):
            logger.info(_LINE, *_log_params(outcome))
        _send(signals.job_succeeded, job, duration=outcome.duration)
        return outcome
    params = _log_params(outcome)
    if outcome.kind == RESCHEDULED:
        logger.info(_LINE + " (retry_job, runs again at %.3f)", *params, outcome.run_at)
    elif outcome.kind == RETRY:
        logger.warning(_LINE + " (%s: %s; retry at %.3f)", *params, type(exc).__name__, _text(exc), outcome.run_at)
        _send(signals.job_retried, job, exception=exc, run_at=outcome.run_at)
    elif outcome.kind == INTERRUPTED:  # (its envelope is as claimed: the attempt is the run's, one more)
        progress = outcome.envelope.meta.get(PROGRESS) or {}
        where = progress.get("current") or (["after " + progress["completed"][-1]] if progress.get("completed") else
                                            ["before its first step"])
        logger.info(_LINE + " (interrupted: %s; stored to resume at %s)", *params[:4], env.executions + 1,
                    *params[5:], exc, where[0])
    elif outcome.kind == CANCELLED:
        logger.info(_LINE + " (its cancellation was asked)", *params)
        _send(signals.job_cancelled, job, job_id=env.job_id, envelope=env)
    elif outcome.kind == DISCARDED:
        logger.warning(_LINE + " (%s: %s)", *params, type(exc).__name__, _text(exc))
        _send(signals.job_discarded, job, exception=exc)
    else:
        logger.error(_LINE + " (%s: %s; moved to the dead set)", *params, type(exc).__name__, _text(exc))
        _send(signals.job_failed, job, envelope=env, exception=exc)
    return outcome


_LINE = "%s %s id=%s queue=%s attempt=%d in %.1f ms%s"


def _log_params(outcome: Outcome) -> tuple:
    env = outcome.envelope
    extra = f" args={env.args!r} kwargs={env.kwargs!r}" if conf.get("LOG_ARGUMENTS") else ""
    return outcome.kind, env.job, env.job_id, env.queue, env.executions, outcome.duration * 1000, extra


def _send(signal, job: Job | None, **kwargs: Any) -> None:
    if not signal.receivers:  # the common case, checked before any work: this runs twice per job
        return
    try:
        signal.send_robust(sender=type(job) if job is not None else None, job=job, **kwargs)
    except Exception:  # pragma: no cover - send_robust already catches receivers
        logger.exception("djjobs signal failed")


def _call_hook(job: Job, hook, *args: Any) -> None:
    """Call an outcome hook; its errors are logged. A coroutine hook (an async job's) is
    kept in ``job._pending_hooks`` for ``aexecute`` to await once the outcome is decided."""
    try:
        result = hook(*args)
    except Exception:
        logger.exception("%s.%s raised; the job's outcome is unchanged", type(job).__qualname__, hook.__name__)
        return
    if result is not None and inspect.isawaitable(result):
        job.__dict__.setdefault("_pending_hooks", []).append((hook.__name__, result))
