"""Django's Tasks framework (``django.tasks``) on djjobs.

    TASKS = {"default": {"BACKEND": "djjobs.tasks.JobsBackend",
                         "QUEUES": ["default", "mailers"],
                         "OPTIONS": {"RESULT_TTL": 86400, "ENQUEUE_ON_COMMIT": False}}}

Plain ``@task`` functions are stored and run through the configured djjobs
adapter by ``runjobs``, beside ``Job`` classes. Each ``@task`` function gets a
registered Job class (named ``djjobs.tasks:<module.function>``), so the worker
runs only decorated functions and never imports a path from a payload: the
task's module must be imported in the worker (``<app>/tasks.py`` is
autodiscovered; elsewhere, import it from an AppConfig.ready()).

Results (status, return value, errors, timestamps, worker ids) are stored in
the adapter for ``RESULT_TTL`` seconds (default one day). djjobs' retry
declarations are available as ``@task(retry_on=(ConnectionError,), attempts=5,
wait="polynomially_longer")``; without them a task runs once, as in Django.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
from datetime import datetime, timezone as dt_timezone
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json

from . import conf, execution, signals
from .adapters import get_adapter
from .handlers import discard_on, retry_on
from .job import Job

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobsTask(Task):
    """A Task that also takes djjobs' retry declarations."""
    retry_on: tuple = ()
    discard_on: tuple = ()
    attempts: int = 5
    wait: Any = 3
    jitter: float = 0.15

    def __post_init__(self):
        Task.__post_init__(self)
        job_class_for(self)


def job_name(task: Task) -> str:
    return f"djjobs.tasks:{task.module_path}"


def job_class_for(task: Task) -> type["TaskJob"]:
    """The registered Job class that runs ``task`` (one per function, made when it is decorated)."""
    from . import registry
    existing = registry.registered().get(job_name(task))
    if existing is not None and existing.task.func is task.func:
        return existing
    attrs = {"job_name": job_name(task), "task": task, "__module__": __name__,
             "__qualname__": f"TaskJob[{task.module_path}]", "retry_attempts": 1}
    base = AsyncTaskJob if iscoroutinefunction(task.func) else TaskJob
    cls = type(f"TaskJob_{task.func.__name__}", (base,), attrs)
    if getattr(task, "retry_on", ()):
        cls = retry_on(*task.retry_on, wait=task.wait, attempts=task.attempts, jitter=task.jitter)(cls)
    if getattr(task, "discard_on", ()):
        cls = discard_on(*task.discard_on)(cls)
    return cls


class TaskJob(Job):
    """Runs one ``@task`` function and keeps its TaskResult record up to date."""
    abstract = True
    task: Task

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        func = self.task.func
        call = async_to_sync(func) if iscoroutinefunction(func) else func  # (async ones: AsyncTaskJob)
        if self.task.takes_context:
            context = TaskContext(task_result=self.backend().result_from_record(self.job_id, self.record))
            return normalize_json(call(context, *args, **kwargs))
        return normalize_json(call(*args, **kwargs))

    def backend(self) -> "JobsBackend":
        from django.tasks import task_backends
        return task_backends[self.task.backend]

    def before_perform(self) -> None:
        backend = self.backend()
        record = backend.load(self.job_id) or backend.new_record(self.task, self.job_id, list(self.arguments),
                                                                  self.kwargs)
        now = _now()
        record.update(status=TaskResultStatus.RUNNING, last_attempted_at=now,
                      started_at=record.get("started_at") or now, worker_ids=[*record["worker_ids"], WORKER_ID])
        self.record = record
        backend.save(self.job_id, record)
        task_started.send(type(backend), task_result=backend.result_from_record(self.job_id, record))

    def after_outcome(self, outcome: execution.Outcome) -> None:
        record = getattr(self, "record", None)
        if record is None:
            return
        backend = self.backend()
        if outcome.error is not None:
            exc = outcome.error
            record["errors"].append({"exception_class_path": f"{type(exc).__module__}.{type(exc).__qualname__}",
                                     "traceback": (outcome.envelope.error or {}).get("traceback", "")})
        until = None
        if outcome.kind == execution.SUCCEEDED:
            record.update(status=TaskResultStatus.SUCCESSFUL, return_value=outcome.result, finished_at=_now())
        elif outcome.kind in (execution.RETRY, execution.RESCHEDULED):
            record.update(status=TaskResultStatus.READY)
            until = outcome.run_at  # kept until the next attempt, plus RESULT_TTL
        else:
            record.update(status=TaskResultStatus.FAILED, finished_at=_now())
        backend.save(self.job_id, record, until=until)
        if record["finished_at"]:
            task_finished.send(type(backend), task_result=backend.result_from_record(self.job_id, record))


class AsyncTaskJob(TaskJob):
    """Runs one ``async def`` @task function natively, as an async job (docs/async.md): on a
    worker's event loop. Its result record is read and written from Django's thread-sensitive
    thread (``sync_to_async``), never on the loop."""
    abstract = True

    async def perform(self, *args: Any, **kwargs: Any) -> Any:
        if self.task.takes_context:
            context = TaskContext(task_result=self.backend().result_from_record(self.job_id, self.record))
            return normalize_json(await self.task.func(context, *args, **kwargs))
        return normalize_json(await self.task.func(*args, **kwargs))

    async def before_perform(self) -> None:
        await sync_to_async(TaskJob.before_perform, thread_sensitive=True)(self)

    async def after_outcome(self, outcome: execution.Outcome) -> None:
        await sync_to_async(TaskJob.after_outcome, thread_sensitive=True)(self, outcome)


class JobsBackend(BaseTaskBackend):
    """``django.tasks`` backend storing and running tasks through djjobs."""
    task_class = JobsTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict):
        super().__init__(alias, params)
        self.result_ttl = float(self.options.get("RESULT_TTL", 86400))
        self.on_commit = bool(self.options.get("ENQUEUE_ON_COMMIT", False))

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        for name in self.queues:
            try:
                conf.check_queue_name(name)
            except ValueError as exc:
                raise InvalidTask(str(exc)) from None

    def enqueue(self, task: Task, args, kwargs) -> TaskResult:
        self.validate_task(task)
        try:
            args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        except TypeError as exc:
            raise InvalidTask(f"Task arguments must be JSON-serializable: {exc}") from None
        job = job_class_for(task)(*args, **kwargs)
        job.configure(queue=task.queue_name, priority=task.priority, wait_until=task.run_after)
        record = self.new_record(task, job.job_id, args, kwargs)
        envelope = job.to_envelope()

        def store():
            from .transaction import store as store_envelopes
            self.save(job.job_id, record)
            store_envelopes(get_adapter(), [envelope])

        if self.on_commit:
            transaction.on_commit(store, using=conf.get("DATABASE"))
        else:
            store()
        result = self.result_from_record(job.job_id, record, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        record = self.load(result_id)
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return self.result_from_record(result_id, record)

    # --- records -----------------------------------------------------------
    def new_record(self, task: Task, job_id: str, args: list, kwargs: dict) -> dict:
        return {"task": task.module_path, "priority": task.priority, "queue_name": task.queue_name,
                "run_after": task.run_after.isoformat() if task.run_after else None,
                "takes_context": task.takes_context, "status": TaskResultStatus.READY, "enqueued_at": _now(),
                "started_at": None, "finished_at": None, "last_attempted_at": None, "args": args,
                "kwargs": kwargs, "errors": [], "worker_ids": [], "return_value": None}

    def save(self, job_id: str, record: dict, *, until: float | None = None) -> None:
        """Store the record for RESULT_TTL seconds, counted from when the task can run at
        the earliest (``run_after``, or ``until`` for a retry) while it has not run. It
        goes to the adapter as one JSON text made by the standard library, which carries
        what Django's JSON rules allow (integers of any size) where orjson stops at 64 bits."""
        ttl = self.result_ttl
        if not record.get("finished_at"):
            start = until if until is not None else (_dt(record.get("run_after")) or datetime.now(dt_timezone.utc)).timestamp()
            ttl += max(0.0, start - datetime.now(dt_timezone.utc).timestamp())
        get_adapter().save_result(job_id, {"json": json.dumps({**record, "status": str(record["status"])})}, ttl)

    def load(self, job_id: str) -> dict | None:
        stored = get_adapter().load_result(job_id)
        if stored is not None and set(stored) == {"json"}:
            return json.loads(stored["json"])
        return stored  # (written by djjobs before the JSON text)

    def result_from_record(self, job_id: str, record: dict, task: Task | None = None) -> TaskResult:
        task = task or self._task(record)
        result = TaskResult(
            task=task, id=job_id, status=TaskResultStatus(record["status"]),
            enqueued_at=_dt(record["enqueued_at"]), started_at=_dt(record["started_at"]),
            finished_at=_dt(record["finished_at"]), last_attempted_at=_dt(record["last_attempted_at"]),
            args=record["args"], kwargs=record["kwargs"], backend=self.alias,
            errors=[TaskError(**e) for e in record["errors"]], worker_ids=list(record["worker_ids"]))
        object.__setattr__(result, "_return_value", record.get("return_value"))
        return result

    def _task(self, record: dict) -> Task:
        from . import registry
        from .errors import UnknownJobError
        try:
            task = registry.resolve(f"djjobs.tasks:{record['task']}").task
        except UnknownJobError:
            raise TaskResultDoesNotExist(
                f"The result's task {record['task']!r} is not a @task function known to this process; "
                "import its module first.") from None
        run_after = _dt(record.get("run_after"))
        return task.using(priority=record["priority"], queue_name=record["queue_name"], run_after=run_after,
                          backend=self.alias)


def _now() -> str:
    return datetime.now(dt_timezone.utc).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _fail_unstarted(sender, job=None, envelope=None, exception=None, **kwargs) -> None:
    """A task's job that went to the dead set without running (its function could not be
    found in the worker, say) never reached ``after_outcome``: its result is FAILED, as
    Django defines it ("raised an exception or was unable to start"), not READY forever."""
    if job is not None or envelope is None or not envelope.job.startswith("djjobs.tasks:"):
        return
    from django.tasks import task_backends
    backend = next((b for b in task_backends.all() if isinstance(b, JobsBackend)), None)
    record = backend.load(envelope.job_id) if backend is not None else None
    if record is None or record.get("finished_at"):
        return
    record["errors"].append({"exception_class_path": f"{type(exception).__module__}.{type(exception).__qualname__}",
                             "traceback": (envelope.error or {}).get("traceback", "")})
    record.update(status=TaskResultStatus.FAILED, finished_at=_now())
    backend.save(envelope.job_id, record)


signals.job_failed.connect(_fail_unstarted, dispatch_uid="djjobs.tasks.fail_unstarted")
