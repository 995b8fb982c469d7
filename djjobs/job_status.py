"""Where a job is now: ``djjobs.status(job_id)`` and ``MyJob.status(job_id)``.

(This module is not named ``status.py``: the function ``djjobs.status`` would shadow it.)

    status = djjobs.status(job.job_id)
    status.state        # "ready", "scheduled", "retry", "running", "blocked", "waiting",
                        # "dead", "cancelled", "finished" or "unknown"
    status.worker_id    # the worker running it (state "running")
    status.error        # the last failure (dead, retry)

Promises:

- It reads storage through the adapter contract only (``get``, ``get_finished``,
  ``workers``), so every adapter answers alike and it never changes a job.
- An id storage does not hold is not an error: the answer is state ``unknown``. That is
  also the answer for a job that ended well (succeeded or discarded) on every adapter but
  the database one, which keeps such jobs ``FINISHED_RETENTION_SECONDS`` (state
  ``finished``); the inline and async adapters keep no job at all.
- A storage that cannot be reached raises as the adapter raises (a Redis or database
  error): an outage never reads as "unknown".
"""
from __future__ import annotations

import dataclasses
import numbers
from datetime import datetime, timezone
from typing import Any

from .adapters import get_adapter
from .adapters.base import STATES, JobRecord

FINISHED, UNKNOWN = "finished", "unknown"
#: every state :func:`status` can answer
STATUS_STATES = (*STATES, FINISHED, UNKNOWN)


def _when(ts: Any) -> datetime | None:
    """A stored timestamp as an aware datetime (UTC), or None when it is no time at all."""
    if not isinstance(ts, numbers.Real) or isinstance(ts, bool) or not ts:
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """One job's place at one moment.

    ``state``: one of :data:`STATUS_STATES`. ``job_class`` is the registered name the
    payload carries ("" when unknown, or when the stored payload does not decode:
    ``readable`` False). ``run_at``: when a scheduled or retrying job is due.
    ``worker_id`` and ``started_at``: the worker running it and since when (state
    ``running``; None when the worker has not reported the job yet — a worker reports the
    jobs it runs within about a second). ``ended_at``: when it went dead, was cancelled or
    finished. ``error``: the last failure (``class``, ``message``, ``traceback``,
    ``failed_at``) of a dead or retrying job, or of any job that failed before."""

    job_id: str
    state: str
    job_class: str = ""
    queue: str = ""
    priority: int = 0
    attempts: int = 0
    enqueued_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker_id: str | None = None
    error: dict | None = None
    readable: bool = True

    @property
    def known(self) -> bool:
        return self.state != UNKNOWN

    def as_dict(self) -> dict:
        """JSON-ready: times as ISO 8601 strings."""
        return {f.name: (v.isoformat() if isinstance(v := getattr(self, f.name), datetime) else v)
                for f in dataclasses.fields(self)}


def status(job_id: str, *, job_class: str | None = None) -> JobStatus:
    """Where the job ``job_id`` is now (see the module's promises). ``job_class``: the
    registered name the job must have (``MyJob.status``); a job of another class reads as
    ``unknown``."""
    if not isinstance(job_id, str):
        raise TypeError(f"status() takes a job id (str), got {job_id!r}; pass job.job_id for a Job instance.")
    adapter = get_adapter()
    record = adapter.get(job_id) or adapter.get_finished(job_id)
    if record is None:
        return JobStatus(job_id, UNKNOWN)
    if job_class is not None and (record.envelope is None or record.envelope.job != job_class):
        return JobStatus(job_id, UNKNOWN)
    return of_record(adapter, record)


def of_record(adapter: Any, record: JobRecord) -> JobStatus:
    """What ``record`` says of its job, with the worker running it when the record does not
    say (the Redis adapter keeps no owner per job: its workers report their busy jobs)."""
    result = from_record(record)
    if result.state == "running" and (result.worker_id is None or result.started_at is None):
        result = with_worker(result, adapter.workers())
    return result


def from_record(record: JobRecord) -> JobStatus:
    """What a :class:`~djjobs.adapters.base.JobRecord` says of its job (no worker lookup)."""
    env = record.envelope
    error = record.error or (env.error if env is not None else None)
    at = _when(record.at)
    return JobStatus(
        job_id=record.job_id, state=record.state if record.state in STATUS_STATES else UNKNOWN,
        job_class=env.job if env is not None else "", queue=record.queue or (env.queue if env is not None else ""),
        priority=env.priority if env is not None else 0, attempts=env.executions if env is not None else 0,
        enqueued_at=_when(env.enqueued_at) if env is not None else None,
        run_at=at if record.state in ("scheduled", "retry") else None,
        ended_at=at if record.state in ("dead", "cancelled", FINISHED) else None,
        worker_id=record.worker_id if record.state == "running" else None,
        error=error if isinstance(error, dict) else None, readable=env is not None)


def with_worker(result: JobStatus, workers: list) -> JobStatus:
    """``result`` of a running job with the worker running the job and since when, from the workers' reports of their busy
    jobs (the Redis adapter keeps no owner per job)."""
    for worker in workers:
        for entry in worker.busy if isinstance(worker.busy, list) else ():
            if isinstance(entry, dict) and entry.get("job_id") == result.job_id:
                if result.worker_id not in (None, worker.worker_id):
                    continue
                return dataclasses.replace(result, worker_id=worker.worker_id,
                                           started_at=_when(entry.get("started_at")))
    return result
