"""Batches: a group of jobs with callbacks when the group is done (docs/batches.md).

    with djjobs.Batch(description="Import users", on_complete=ImportReport,
                      on_success=ImportDone, on_death=ImportAlert) as batch:
        for row in rows:
            ImportUserJob.perform_later(row)

Promises (every adapter, proven by the conformance suite):

- Each callback is a job that is stored **exactly once**, by the same atomic step that
  settles the job deciding it: ``on_death`` by the first job of the batch to go to the dead
  set, ``on_complete`` (and ``on_success`` when no job failed) by the last job to end once
  the batch is closed, or by the close itself when nothing is pending (an empty batch
  completes at once). Two jobs ending at the same instant on two processes, a job run twice
  after its worker died, or a worker killed right after the last job's end cannot fire one
  twice or not at all: settling, counting and storing the callback are one step, and a
  job is settled once (``batch_status``). The callback itself runs at least once, like any
  job.
- A batch is open while its ``with`` block runs, and cannot complete before the block exits;
  a job of the batch may add jobs to it while it runs (``self.batch.add(...)`` or ``with
  self.batch:``): it is itself pending until it ends, so the batch cannot complete under it.
- Inside ``transaction.atomic()`` the batch, its jobs and its close are stored after the
  commit (or, on the database adapter, in the transaction), so a rollback leaves nothing.
- Enqueueing into a complete batch raises :class:`~djjobs.errors.BatchFinished`, stores
  nothing.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson

from . import batch_status, registry
from .adapters import get_adapter
from .batch_status import STATUS_PLACEHOLDER, BatchStatus
from .envelope import Envelope
from .transaction import commit_aliases, on_commit_of, submit


logger = logging.getLogger("djjobs")


class _StatusAccess:
    """``Batch.status(batch_id)`` on the class, ``batch.status()`` on an instance."""

    def __get__(self, obj: "Batch | None", owner: type) -> Any:
        if obj is None:
            return lambda batch_id: get_adapter().batch_status(_checked_id(batch_id))
        return lambda: get_adapter().batch_status(obj.id)


def _checked_id(batch_id: Any) -> str:
    if not isinstance(batch_id, str) or not batch_id or len(batch_id) > 64:
        raise TypeError(f"A batch id is a non-empty str of at most 64 characters, got {batch_id!r}.")
    return batch_id


class Batch:
    """A new batch (``Batch(description=..., on_complete=..., ...)``, opened by ``with``) or a
    handle on an existing one (:meth:`existing`, ``Job.batch``), whose ``with`` block only
    makes the jobs enqueued inside join it.

    ``on_complete``, ``on_success``, ``on_death``: a Job class (or ``Job.set(queue=...,
    priority=...)``), run with the :class:`~djjobs.BatchStatus` as its one argument, or a Job
    instance (``Report(path)``), run with the status first and its own arguments after.
    ``properties``: a JSON-serialisable dict kept with the batch (``status.properties``)."""

    status = _StatusAccess()

    def __init__(self, description: str = "", *, on_complete: Any = None, on_success: Any = None,
                 on_death: Any = None, properties: dict | None = None):
        if not isinstance(description, str):
            raise TypeError(f"Batch description must be a str, got {description!r}.")
        if properties is not None:
            if not isinstance(properties, dict):
                raise TypeError(f"Batch properties must be a dict, got {type(properties).__name__}.")
            try:
                orjson.dumps(properties)
            except TypeError as exc:
                raise TypeError(f"Batch properties must be JSON-serialisable: {exc}") from None
        self.id: str = os.urandom(16).hex()
        self.description = description
        self.properties = dict(properties or {})
        self.callbacks: dict[str, Envelope] = {}
        for event, callback in (("complete", on_complete), ("success", on_success), ("death", on_death)):
            if callback is not None:
                self.callbacks[event] = self._template(event, callback)
        self.deferred = False
        self._new, self._opened, self._closed = True, False, False
        self._tokens: list = []

    @classmethod
    def existing(cls, batch_id: str) -> "Batch":
        """A handle on a stored batch, to add jobs to it (``with handle:`` or
        :meth:`add`); it is never closed by the handle."""
        batch = cls.__new__(cls)
        batch.id, batch.description, batch.properties, batch.callbacks = _checked_id(batch_id), "", {}, {}
        batch.deferred, batch._new, batch._opened, batch._closed, batch._tokens = False, False, True, True, []
        return batch

    # --- use -----------------------------------------------------------------
    def __enter__(self) -> "Batch":
        if self._new and not self._opened:
            self._open()
        self._tokens.append(batch_status.enter(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        batch_status.leave(self._tokens.pop())
        if self._new and not self._closed and not self._tokens:
            self._close()

    def add(self, *jobs: Any) -> list:
        """Enqueue Job instances (``MyJob(args)``, ``MyJob.set(...).new(args)``) into this
        batch, in one round trip per 1,000 jobs where the adapter can."""
        flat: list = []
        for item in jobs:
            flat.extend(item if isinstance(item, (list, tuple)) else [item])
        if self._new and not self._opened:
            raise RuntimeError("Open the batch first: `with Batch(...) as batch:`, then add jobs inside or after.")
        with self:
            submit(flat)
        return flat

    # --- storage -------------------------------------------------------------
    def _snapshot(self) -> BatchStatus:
        return BatchStatus(id=self.id, description=self.description, created_ts=time.time(),
                           properties=self.properties,
                           callbacks={event: env.job_id for event, env in self.callbacks.items()})

    def _open(self) -> None:
        adapter = get_adapter()
        aliases = commit_aliases(adapter)
        status = self._snapshot()
        self._opened, self.deferred = True, bool(aliases)
        if aliases:
            on_commit_of(aliases, lambda: _after_commit("open", lambda: adapter.open_batch(status, self.callbacks)))
        else:
            adapter.open_batch(status, self.callbacks)

    def _close(self) -> None:
        adapter = get_adapter()
        self._closed = True
        if self.deferred:
            aliases = commit_aliases(adapter) or []
            if aliases:  # after the jobs' own after-commit stores (registered before, run before)
                on_commit_of(aliases, lambda: _after_commit("close", lambda: adapter.close_batch(self.id)))
                return
        adapter.close_batch(self.id)

    def _template(self, event: str, callback: Any) -> Envelope:
        """The callback's envelope, complete but for its argument (the status, written in
        by the step that fires it) and its enqueue time."""
        extra: tuple = ()
        kwargs: dict = {}
        if not isinstance(callback, type) and hasattr(callback, "to_envelope"):  # a Job: its arguments follow the status
            extra, kwargs, job_class, options = callback.arguments, callback.kwargs, type(callback), {
                "queue": callback.queue_name, "priority": callback.priority}
        else:
            job_class = getattr(callback, "job_class", callback)
            options = getattr(callback, "options", {})
        if not isinstance(job_class, type) or registry.lookup(getattr(job_class, "job_name", "")) is not job_class:
            raise TypeError(f"Batch on_{event} must be a Job subclass, Job.set(queue=..., priority=...) or a Job "
                            f"instance (its arguments follow the status), got {callback!r}.")
        if job_class.unique_for is not None or job_class.concurrency_limit is not None:
            raise TypeError(f"Batch on_{event}: {job_class.__qualname__} is unique or concurrency-limited; a batch "
                            "callback is stored exactly once already. Use a class without unique_for and "
                            "concurrency_limit.")
        bad = sorted(k for k, v in options.items() if v is not None and k not in ("queue", "priority"))
        if bad:
            raise TypeError(f"Batch on_{event}: only queue= and priority= apply to a callback, not {', '.join(bad)}.")
        job = job_class(STATUS_PLACEHOLDER, *extra, **kwargs).configure(**{k: v for k, v in options.items() if k in ("queue", "priority")})
        token = batch_status.enter(None)  # a callback is not a job of the batch the caller may be in
        try:
            env = job.to_envelope()
        finally:
            batch_status.leave(token)
        env.enqueued_at = 0
        env.meta["batch_event"] = {"batch": self.id, "event": event}
        return env

    def __repr__(self) -> str:
        return f"<Batch {self.id} {self.description!r}>"


def _after_commit(what: str, step) -> None:
    try:
        step()
    except Exception:
        logger.exception("Batch %s after commit failed; the transaction committed.", what)
