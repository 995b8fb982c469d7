"""Async jobs: which Job classes are async, and the enqueue API for async code.

A Job class whose ``perform`` is ``async def`` is an *async job* (``is_async`` True): a
worker runs it on its process' event loop (djjobs/worker/async_runner.py), and the
hooks of such a class may be coroutines too. A sync job's hooks must stay plain ``def``:
nothing would await them. Checked when the class is defined (:func:`classify`).

From async code (an async view), ``await MyJob.aperform_later(...)``,
``await MyJob.set(...).aperform_later(...)``, ``await aperform_all_later(jobs)`` and
``await MyJob.aperform_now(...)`` do what their sync namesakes do without blocking the event
loop: the enqueue runs in a thread (asgiref ``sync_to_async``). For the database adapter,
which writes the job in the caller's transaction, that thread is the one Django's async ORM
uses (``thread_sensitive=True``), so the job row shares the connection the caller's queries
use; other adapters enqueue from a thread of their own (``thread_sensitive=False``), so
enqueues from many coroutines overlap. ``enqueue_after_commit`` behaves as in sync code:
from async code there is no open ``atomic()`` (Django refuses one there), so the job is
stored at once, unless the enqueue runs inside a ``sync_to_async`` function's transaction.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Iterable

from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from .job import Job

#: the methods a worker calls on a job
RUN_METHODS = ("perform", "before_perform", "after_perform", "around_perform", "after_discard", "after_outcome")
HOOKS = RUN_METHODS[1:]


def is_coroutine_method(method: Any) -> bool:
    return method is not None and inspect.iscoroutinefunction(method)


def classify(cls: type) -> bool:
    """Whether ``cls`` is an async job (its ``perform`` is ``async def``). Raises TypeError,
    naming the method and what to do, for what no runner could run: an async generator
    among the run methods, or a coroutine hook on a sync job (it would be called and never
    awaited: its body would never run)."""
    for name in RUN_METHODS:
        if inspect.isasyncgenfunction(getattr(cls, name, None)):
            raise TypeError(f"{cls.__qualname__}.{name} is an async generator (`async def` with `yield`): djjobs "
                            "cannot run it (its body would never run). Make it a plain `async def` (or `def`) that "
                            "returns.")
    if is_coroutine_method(getattr(cls, "perform", None)):
        return True
    for name in HOOKS:
        if is_coroutine_method(getattr(cls, name, None)):
            raise TypeError(
                f"{cls.__qualname__}.{name} is `async def` but {cls.__qualname__}.perform is a plain `def`: hooks "
                "of a sync job run on a thread, where nothing awaits them (its body would never run). Make "
                "`perform` `async def` too (the job then runs on the worker's event loop; docs/async.md), or make "
                f"`{name}` a plain `def` (run async code inside it with `asgiref.sync.async_to_sync`).")
    return False


def enqueue_thread_sensitive() -> bool:
    """Whether an enqueue from async code runs on Django's thread-sensitive thread: for an
    adapter that writes the job in the caller's database transaction (database), the
    connection must be the one the caller's async ORM queries use."""
    from .adapters import get_adapter
    return bool(get_adapter().transactional_enqueue)


async def in_thread(fn, *args: Any, **kwargs: Any) -> Any:
    """Run the sync ``fn`` without blocking the event loop (see the module docstring)."""
    return await sync_to_async(fn, thread_sensitive=enqueue_thread_sensitive())(*args, **kwargs)


class AsyncJobAPI:
    """The a-prefixed class methods of :class:`~djjobs.job.Job` (Django's convention)."""

    @classmethod
    async def aperform_later(cls, *args: Any, **kwargs: Any) -> "Job":
        """``perform_later`` from async code: enqueues without blocking the event loop."""
        job = cls(*args, **kwargs)  # arguments are checked here, in the caller
        return await in_thread(job.enqueue)

    @classmethod
    async def aperform_now(cls, *args: Any, **kwargs: Any) -> Any:
        """``perform_now`` from async code (tests, scripts): runs the job here, on the running
        event loop for an async job (a sync job runs in a thread), with the same retry rules."""
        return await cls(*args, **kwargs)._aperform_now()

    async def _aperform_now(self) -> Any:
        from .in_caller import aperform_in_caller
        return await aperform_in_caller(self.to_envelope(), retry_later=True)


class AsyncConfiguredAPI:
    """The a-prefixed methods of ``Job.set(...)``."""

    async def aperform_later(self, *args: Any, **kwargs: Any) -> "Job":
        job = self.new(*args, **kwargs)
        from .transaction import submit
        await in_thread(submit, [job])
        return job

    async def aperform_now(self, *args: Any, **kwargs: Any) -> Any:
        options = {k: v for k, v in self.options.items() if k in ("queue", "priority")}
        return await self.job_class(*args, **kwargs).configure(**options)._aperform_now()


async def aperform_all_later(jobs: Iterable["Job"]) -> list["Job"]:
    """``perform_all_later`` from async code, without blocking the event loop."""
    from .job import perform_all_later
    jobs = list(jobs)
    await in_thread(perform_all_later, jobs)
    return jobs
