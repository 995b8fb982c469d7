"""Continuations: a long job split into steps that survive a worker's stop (docs/continuations.md).

    with self.step("download"):
        download(import_)
    with self.step("rows", cursor=0) as step:
        for i in range(step.cursor, import_.row_count):
            import_row(import_, i)
            step.checkpoint(i + 1)

Promises:

- A finished step never runs again in a later run of the same job: its ``with`` body is
  skipped (how: :meth:`Step.__enter__`). Code outside steps runs on every run.
- ``step.checkpoint(cursor)`` records the cursor. When the worker is stopping it raises
  :class:`~djjobs.errors.JobInterrupted`: the job is stored again, ready, with its progress,
  not as a failure nor an attempt, and resumes at that cursor on any worker. A requested
  cancellation makes it raise :class:`~djjobs.errors.JobCancelled` instead.
- Progress is also stored durably, fenced by the run's claim: at a checkpoint at most once
  per ``checkpoint_interval`` seconds (the job class' attribute), and always when a step
  ends. A worker killed outright (SIGKILL, OOM) leaves the job to lease recovery, which
  runs it again from the last progress stored: what ran after it may run again, nothing
  before it does.
- A failed run keeps its progress too: a retry resumes at the failed step's last cursor,
  with the finished steps skipped.

The progress lives in ``envelope.meta["progress"]``: ``{"completed": [names],
"current": [name, cursor] (a step begun), "resumptions": n (times interrupted)}``.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from .errors import CheckpointError, JobCancelled, JobInterrupted, StepError

if TYPE_CHECKING:
    from .envelope import Envelope
    from .job import Job
    from .run_context import RunContext

logger = logging.getLogger("djjobs")
PROGRESS = "progress"
_UNSET = object()


class _SkipStep(BaseException):
    """Raised in a finished step's body before its first instruction; its own ``__exit__``
    swallows it. Private: nothing else ever sees it."""


def progress_of(meta: dict | None) -> dict | None:
    """The progress stored in an envelope's meta, or None (a job without steps run yet)."""
    return meta.get(PROGRESS) if meta else None


def with_progress(envelope: "Envelope", progress: dict) -> "Envelope":
    """A copy of ``envelope`` carrying ``progress`` (its meta copied: the original's is shared)."""
    return envelope.copy(meta={**envelope.meta, PROGRESS: progress})


def check_cursor(cursor: Any, where: str) -> Any:
    """``cursor`` if it is plain JSON that comes back equal from storage, else CheckpointError."""
    try:
        same = orjson.loads(orjson.dumps(cursor)) == cursor
    except (orjson.JSONEncodeError, TypeError, ValueError, RecursionError):
        same = False
    if not same or isinstance(cursor, float) and cursor != cursor:
        raise CheckpointError(f"{where}: the cursor {cursor!r} is not plain JSON (None, bool, int, float, str, and "
                              "lists and str-keyed dicts of those) that storage hands back unchanged; a tuple, "
                              "datetime or model instance is not. Store an id, a number or a list instead.")
    return cursor


def check_no_transaction(where: str) -> None:
    """CheckpointError inside a transaction the caller opened on any database alias (Django's
    TestCase's own transactions do not count, as for enqueues: djjobs/transaction.py)."""
    from django.db import connections
    from .transaction import in_user_transaction
    open_aliases = [c.alias for c in connections.all(initialized_only=True) if in_user_transaction(c.alias)]
    if open_aliases:
        raise CheckpointError(f"{where} inside transaction.atomic() (database {', '.join(map(repr, open_aliases))}): "
                              "progress saved now would outlive work that may still roll back. Commit first: "
                              "end the atomic block before the checkpoint, e.g. one atomic block per item.")


class Continuation:
    """One run's progress through its job's steps (``Job.step`` creates it on first use)."""

    def __init__(self, job: "Job", stored: dict | None, context: "RunContext | None", interval: float):
        self.job, self.context, self.interval = job, context, interval
        self.completed, self.resume, self.resumptions = _parse(stored, job)
        #: (name, cursor) of the step begun and not finished, as it is to be stored
        self.current: tuple[str, Any] | None = self.resume
        self.encountered: list[str] = []
        self.running: Step | None = None
        self.ran = False  # a step's body ran (to its end) in this run
        #: explicit checkpoints so far in this run, and the last interruption point reached:
        #: "checkpoint" or "step" (the start of a step after another ran), for the test helpers
        self.checkpoints, self.point = 0, ""
        self.saved_at = time.monotonic()
        if context is not None:
            context.continuation = self

    def progress(self, resumed: int = 0) -> dict:
        data: dict = {"completed": list(self.completed), "resumptions": self.resumptions + resumed}
        if self.current is not None:
            data["current"] = [self.current[0], self.current[1]]
        return data

    def step(self, name: str, cursor: Any) -> "Step":
        where = f"{type(self.job).__qualname__}.step({name!r})"
        if not isinstance(name, str) or not name:
            raise StepError(f"{type(self.job).__qualname__}.step(): a step's name is a non-empty str, got {name!r}.")
        if self.running is not None:
            raise StepError(f"{where} inside step {self.running.name!r}: steps do not nest; end one before the next.")
        if name in self.encountered:
            raise StepError(f"{where}: a step of that name already ran in this run; each step's name is used once.")
        self.encountered.append(name)
        if name in self.completed:
            if self.ran:
                raise StepError(f"{where} is finished in the stored progress, yet found after a step that was not: "
                                "the job's steps changed order since its progress was stored.")
            return Step(self, name, None, skip=True)
        if self.resume is not None and self.resume[0] != name:
            raise StepError(f"{where}: the stored progress resumes step {self.resume[0]!r}, but {name!r} came first "
                            "(the job's steps changed since it was stored). Keep step names and order stable "
                            "while jobs of the old code may resume.")
        resumed = self.resume is not None
        if resumed:
            cursor, self.resume = self.resume[1], None
        else:
            check_cursor(cursor, where)
        if self.ran:
            self.interruption_point("step", where)
        self.current = (name, cursor)
        return Step(self, name, cursor, resumed=resumed)

    def interruption_point(self, point: str, where: str) -> None:
        """Cancellation first (terminal), then the worker stopping (resumable)."""
        self.point = point
        context = self.context
        if context is None:
            return
        if context.is_cancelled():
            raise JobCancelled(f"{where}: the job's cancellation was asked")
        if context.is_stopping():
            raise JobInterrupted(f"{where}: the worker is stopping")

    def save(self, where: str, force: bool = False) -> None:
        """Store the progress durably (throttled unless ``force``). A claim no longer held means
        another run owns the job now: this one stops (interrupted; its outcome is fenced)."""
        context = self.context
        if context is None or context.save_progress is None:
            return
        now = time.monotonic()
        if not force and now - self.saved_at < self.interval:
            return
        self.saved_at = now
        try:
            held = context.save_progress(self.progress())
        except Exception as exc:  # storage down: the next checkpoint (or the outcome) stores it
            logger.warning("%s: saving progress failed (%s: %s); it is saved at the next checkpoint or with the "
                           "run's outcome", where, type(exc).__name__, exc)
            return
        if held is False:
            raise JobInterrupted(f"{where}: this run no longer holds the job (its lease was recovered)")


class Step:
    """A step of a continuation: ``with job.step(name, cursor=...) as step``."""

    def __init__(self, continuation: Continuation, name: str, cursor: Any, *, skip: bool = False,
                 resumed: bool = False):
        self._continuation, self.name, self.cursor = continuation, name, cursor
        self.skipped, self.resumed = skip, resumed  # finished in an earlier run / resumed from a stored cursor
        self._frame = None

    def __repr__(self) -> str:
        return f"<Step {self.name!r} cursor={self.cursor!r}{' skipped' if self.skipped else ''}>"

    def checkpoint(self, cursor: Any = _UNSET) -> None:
        """Record ``cursor`` (omitted: the cursor stays) as the point to resume from; then
        raise JobCancelled if the job's cancellation was asked, JobInterrupted if the worker
        is stopping, and store the progress durably if ``checkpoint_interval`` has passed."""
        cont = self._continuation
        where = f"{type(cont.job).__qualname__} step {self.name!r}: checkpoint"
        if cont.running is not self:
            raise StepError(f"{where} outside its `with` block.")
        if cursor is not _UNSET:
            self.cursor = check_cursor(cursor, where)
            cont.current = (self.name, self.cursor)
        check_no_transaction(where)
        cont.checkpoints += 1
        cont.interruption_point("checkpoint", where)
        cont.save(where)

    # --- the with statement -------------------------------------------------------
    def __enter__(self) -> "Step":
        if not self.skipped:
            self._continuation.running = self
            return self
        # A finished step: its body must not run. Python cannot skip a with body from
        # __enter__, so a trace function is set on the calling frame for one instruction:
        # it raises _SkipStep there, inside the block, and __exit__ swallows it. Any tracer
        # installed (a debugger, coverage) is put back as it was in __exit__.
        frame = sys._getframe(1)
        if frame.f_globals.get("__name__") == "contextlib":
            raise StepError(f"{self.name!r}: enter a step with a `with` statement of its own, not through contextlib.")
        self._frame, self._saved = frame, (sys.gettrace(), frame.f_trace, frame.f_trace_opcodes)

        def skip(f, event, arg):
            if f is frame and event in ("line", "opcode"):
                raise _SkipStep
            return skip
        sys.settrace(self._saved[0] or _no_trace)
        frame.f_trace, frame.f_trace_opcodes = skip, True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        cont = self._continuation
        if self._frame is not None:
            global_trace, local_trace, opcodes = self._saved
            self._frame.f_trace, self._frame.f_trace_opcodes = local_trace, opcodes
            sys.settrace(global_trace)
            self._frame = self._saved = None
            return exc_type is _SkipStep
        cont.running = None
        if exc_type is None:  # finished: recorded, and stored at once
            where = f"{type(cont.job).__qualname__} step {self.name!r}: its end"
            check_no_transaction(where)  # (the step's end is a checkpoint too)
            cont.completed.append(self.name)
            cont.current, cont.ran = None, True
            cont.save(where, force=True)
        return False


def _no_trace(frame, event, arg):
    return None


def _parse(stored: Any, job: "Job") -> tuple[list[str], tuple[str, Any] | None, int]:
    """(completed, current or None, resumptions) from stored progress; StepError when malformed."""
    if stored is None:
        return [], None, 0
    completed, current = stored.get("completed", []) if isinstance(stored, dict) else None, None
    resumptions = stored.get("resumptions", 0) if isinstance(stored, dict) else None
    if isinstance(stored, dict) and "current" in stored:
        current = stored["current"]
        ok = isinstance(current, list) and len(current) == 2 and isinstance(current[0], str)
        current = tuple(current) if ok else False
    if (not isinstance(completed, list) or not all(isinstance(n, str) for n in completed) or current is False
            or type(resumptions) is not int):
        raise StepError(f"{type(job).__qualname__}: the stored progress {stored!r} is malformed (expected "
                        "{'completed': [names], 'current': [name, cursor], 'resumptions': n}).")
    return list(completed), current, resumptions
