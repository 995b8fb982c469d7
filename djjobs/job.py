"""The ``Job`` base class: what users subclass and call.

``perform_later`` stores the job through the configured adapter (deferred to
``on_commit`` inside a transaction, see :mod:`djjobs.transaction`);
``perform_now`` runs it here, with the same retry/discard rules.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import arguments, batch_status, concurrency, conf, job_async, prerequisites, registry, uniqueness
from .batch_status import BatchStatus
from .batches import Batch
from .envelope import Envelope

if TYPE_CHECKING:
    from .continuations import Continuation, Step
    from .job_status import JobStatus
    from .run_context import RunContext


class Reschedule(BaseException):
    """Raised by :meth:`Job.retry_job`: run this job again later, not as a failure.

    A BaseException so that a job's own ``except Exception`` cannot swallow it.
    """

    def __init__(self, wait: float):
        super().__init__(wait)
        self.wait = wait


def seconds(value: float | int | timedelta | None, what: str = "wait") -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number of seconds, got {value!r}.")
        return float(value)
    raise TypeError(f"{what} must be seconds (int/float) or a timedelta, got {value!r}.")


class Job(job_async.AsyncJobAPI):
    """Subclass, define ``perform``, and call ``MyJob.perform_later(...)``.

    Class attributes (all optional): ``queue_name`` ("default"), ``priority``
    (0; higher runs first within a queue where the adapter supports it),
    ``enqueue_after_commit`` (True: inside ``atomic()`` the enqueue waits for the
    commit), ``timeout`` (seconds a worker lets one run take, None = no limit),
    ``retry_attempts`` (runs in all under the default retry policy; None = the
    ``RETRY_ATTEMPTS`` setting), ``on_worker_death`` ("retry" or "fail"),
    ``job_name`` (the registered name; defaults to ``module.QualName``),
    ``abstract`` (True: a base class that is never registered).

    Unique jobs (docs/flow-control.md): ``unique_for`` (seconds or a timedelta: the
    longest a uniqueness key may be held; None = not unique), ``unique_until``
    ("finish" or "start"), ``unique_conflict`` ("skip", "replace" or "raise"), and
    :meth:`unique_key` to say which enqueues count as the same job. Rate limits:
    ``rate_limit = (100, 60)`` (at most 100 starts per 60 s, per :meth:`rate_limit_key`).
    Concurrency limits: ``concurrency_limit = 2`` (at most 2 queued or running at once, per
    :meth:`concurrency_key`).

    Async jobs (docs/async.md): an ``async def perform`` runs on the worker's event loop;
    its hooks may then be coroutines too. ``aperform_later``/``aperform_now`` enqueue or run
    from async code.

    Continuations (docs/continuations.md): :meth:`step` splits ``perform`` into steps that
    resume after the worker stops; ``checkpoint_interval`` (seconds, default 1) is how often
    at most a checkpoint stores the progress durably (a step's end always does).
    """

    queue_name: ClassVar[str] = "default"
    priority: ClassVar[int] = 0
    enqueue_after_commit: ClassVar[bool] = True
    timeout: ClassVar[float | None] = None
    retry_attempts: ClassVar[int | None] = None
    on_worker_death: ClassVar[str] = "retry"
    unique_for: ClassVar[float | timedelta | None] = None
    unique_until: ClassVar[str] = "finish"
    unique_conflict: ClassVar[str] = "skip"
    rate_limit: ClassVar[tuple | None] = None
    concurrency_limit: ClassVar[int | None] = None
    checkpoint_interval: ClassVar[float] = 1.0
    job_name: ClassVar[str]
    abstract: ClassVar[bool] = True
    #: True when ``perform`` is ``async def``: the job runs on a worker's event loop (docs/async.md)
    is_async: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.is_async = job_async.classify(cls)
        if "job_name" not in cls.__dict__:
            cls.job_name = f"{cls.__module__}.{cls.__qualname__}"
        if not cls.__dict__.get("abstract", False):
            cls.abstract = False
            registry.register(cls)
        if cls.on_worker_death not in ("retry", "fail"):
            raise ValueError(f"{cls.__qualname__}.on_worker_death must be 'retry' or 'fail'.")
        check_priority(cls.priority, f"{cls.__qualname__}.priority")
        interval = cls.checkpoint_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 0:
            raise ValueError(f"{cls.__qualname__}.checkpoint_interval must be seconds >= 0, got {interval!r}.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: tuple = args
        self.kwargs: dict = kwargs
        self.job_id: str = os.urandom(16).hex()
        self.queue_name = type(self).queue_name
        self.priority = type(self).priority
        self.executions: int = 0
        self.exception_executions: dict[str, int] = {}
        self.enqueued_ts: float | None = None
        self.scheduled_at: datetime | None = None
        self.run_at: float | None = None
        self.envelope: Envelope | None = None
        self.unique_key_override: str | None = None
        #: True when a unique enqueue found the key held: ``job_id`` is then the holder's
        self.duplicate: bool = False
        #: ``set(after=...)``: the declaration stored in ``meta["after"]`` (djjobs/prerequisites.py)
        self.prerequisites: dict | None = None

    # --- to override ---------------------------------------------------
    def perform(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform().")

    def unique_key(self, *args: Any, **kwargs: Any) -> str | None:
        """The uniqueness key of an enqueue with these arguments (a job with ``unique_for``):
        enqueues with equal keys are the same job. None (the default) means the job's name
        and its arguments as canonical JSON."""
        return None

    def rate_limit_key(self, *args: Any, **kwargs: Any) -> str | None:
        """The key whose ``rate_limit`` this enqueue counts against (a job with
        ``rate_limit``), computed at enqueue; None (the default) means the job's name."""
        return None

    def concurrency_key(self, *args: Any, **kwargs: Any) -> str | None:
        """The key whose ``concurrency_limit`` this enqueue counts against (a job with
        ``concurrency_limit``), computed at enqueue; None (the default) means the job's name."""
        return None

    def before_perform(self) -> None:
        """Runs before ``perform``; raising here fails the run like ``perform`` would."""

    def after_perform(self) -> None:
        """Runs after ``perform`` returned without raising."""

    def around_perform(self, run: Callable[[], Any]) -> Any:
        """Wraps before/perform/after; must call ``run()`` and return its value."""
        return run()

    def after_discard(self, exc: BaseException) -> None:
        """Called when ``@discard_on`` (or an exhausted ``on_exhausted`` handler) drops the job."""

    def after_outcome(self, outcome: Any) -> None:
        """Called once per run with its :class:`~djjobs.execution.Outcome` (kind
        succeeded/retry/rescheduled/discarded/dead/cancelled/interrupted), e.g. to record results or metrics.
        Exceptions here are logged and do not change the outcome."""

    # --- API -----------------------------------------------------------
    @classmethod
    def perform_later(cls, *args: Any, **kwargs: Any) -> "Job":
        """Enqueue with the class' defaults; returns the Job (``.job_id``)."""
        return cls(*args, **kwargs).enqueue()

    @classmethod
    def perform_now(cls, *args: Any, **kwargs: Any) -> Any:
        """Run here and now; a failure follows the retry rules (a retry is enqueued for later,
        after the caller's transaction commits, as ``perform_later`` would) and a failure for
        good re-raises. Returns ``perform``'s return value."""
        return cls(*args, **kwargs)._perform_now()

    def _perform_now(self) -> Any:
        from .in_caller import perform_in_caller
        return perform_in_caller(self.to_envelope(), retry_later=True)

    @classmethod
    def status(cls, job_id: str) -> "JobStatus":
        """Where the job ``job_id`` of this class is now (:func:`djjobs.status`); a job of
        another class reads as unknown."""
        from .job_status import status
        return status(job_id, job_class=cls.job_name)

    @classmethod
    def set(cls, *, wait: float | timedelta | None = None, wait_until: datetime | None = None,
            queue: str | None = None, priority: int | None = None, unique_key: str | None = None,
            after: Iterable["Job | str"] | None = None, if_prerequisite_fails: str | None = None) -> "ConfiguredJob":
        """Options for one enqueue: ``MyJob.set(wait=300, queue="critical").perform_later(...)``.
        ``unique_key`` makes this enqueue unique under that key (``unique_for`` of the class,
        or a day when the class has none). ``after``: jobs (or job ids) that must succeed
        first; the job waits for them (``if_prerequisite_fails``: "dead", "run" or "discard";
        docs/prerequisites.md)."""
        return ConfiguredJob(cls, wait=wait, wait_until=wait_until, queue=queue, priority=priority,
                             unique_key=unique_key, after=after, if_prerequisite_fails=if_prerequisite_fails)

    def enqueue(self, *, wait: float | timedelta | None = None, wait_until: datetime | None = None,
                queue: str | None = None, priority: int | None = None, unique_key: str | None = None,
                after: Iterable["Job | str"] | None = None, if_prerequisite_fails: str | None = None) -> "Job":
        """Store this job (see :meth:`perform_later`). A unique job whose key is held comes
        back with ``duplicate`` True and the holder's ``job_id`` (``unique_conflict =
        "skip"``), or raises DuplicateJob (``"raise"``). Inside ``atomic()`` on an adapter
        that stores after the commit (redis), that is known only once the commit has run."""
        self.configure(wait=wait, wait_until=wait_until, queue=queue, priority=priority, unique_key=unique_key,
                       after=after, if_prerequisite_fails=if_prerequisite_fails)
        from .transaction import submit
        submit([self])
        return self

    def configure(self, *, wait: float | timedelta | None = None, wait_until: datetime | None = None,
                  queue: str | None = None, priority: int | None = None, unique_key: str | None = None,
                  after: Iterable["Job | str"] | None = None, if_prerequisite_fails: str | None = None) -> "Job":
        if wait is not None and wait_until is not None:
            raise TypeError("Pass wait or wait_until, not both.")
        if after is not None:
            self.prerequisites = prerequisites.declaration(after, if_prerequisite_fails)
        elif if_prerequisite_fails is not None:
            raise TypeError("if_prerequisite_fails= applies to a job with after=; pass both.")
        if unique_key is not None:
            if not isinstance(unique_key, str) or not unique_key:
                raise TypeError(f"unique_key must be a non-empty str, got {unique_key!r}.")
            self.unique_key_override = unique_key
        if queue is not None:
            self.queue_name = conf.check_queue_name(queue)
        if priority is not None:
            self.priority = check_priority(priority)
        if wait is not None:
            self.run_at = time.time() + seconds(wait)
        elif wait_until is not None:
            if not isinstance(wait_until, datetime) or wait_until.tzinfo is None:
                raise TypeError(f"wait_until must be an aware datetime, got {wait_until!r}.")
            self.run_at = wait_until.timestamp()
        return self

    def retry_job(self, wait: float | timedelta = 0) -> None:
        """Stop this run and run the job again after ``wait`` (e.g. on HTTP 429).
        It does not count as a failure: no retry attempt is used up."""
        raise Reschedule(seconds(wait))

    # --- envelope <-> instance ----------------------------------------------
    def to_envelope(self) -> Envelope:
        """Serialize (raises SerializationError naming a bad argument, in the caller)."""
        args, kwargs = arguments.serialize(self.arguments, self.kwargs)
        conf.check_queue_name(self.queue_name)
        scheduled_at = self.scheduled_at
        now = time.time()
        meta = _zone_meta(scheduled_at) if scheduled_at else {}
        if self.unique_key_override is not None or type(self).unique_for is not None:
            if self.prerequisites is not None:
                raise ValueError(f"{type(self).__qualname__}: a unique job cannot have prerequisites (after=): "
                                 "whether its key is held would depend on jobs not run yet. Make the first job "
                                 "of the chain unique instead.")
            meta["unique"] = uniqueness.lock_for(self, args, kwargs, now).as_meta()
        if self.prerequisites is not None:
            meta["after"] = self.prerequisites
        batch = batch_status.current()
        if batch is not None:
            meta["batch"] = batch.id
        if type(self).concurrency_limit is not None:
            meta["concurrency"] = concurrency.slot_for(self)
        if type(self).rate_limit is not None:
            rate_key = self.rate_limit_key(*self.arguments, **self.kwargs)
            if rate_key is not None:
                if not isinstance(rate_key, str) or not rate_key:
                    raise TypeError(f"{type(self).__qualname__}.rate_limit_key() must return a non-empty str or None, "
                                    f"got {rate_key!r}.")
                meta["rate_key"] = rate_key
        # Positional, in field order: half the cost of keywords, and this runs for every enqueue.
        env = Envelope(type(self).job_name, args, kwargs, self.queue_name, self.priority, self.job_id, now,
                       self.run_at, self.executions, dict(self.exception_executions), 0, None,
                       scheduled_at.timestamp() if scheduled_at else None, meta)
        self.envelope, self.enqueued_ts = env, env.enqueued_at
        return env

    @classmethod
    def from_envelope(cls, env: Envelope) -> "Job":
        """An instance carrying the envelope's state; arguments still serialized
        (see :meth:`load_arguments`), so a missing row fails inside the run."""
        job = cls.__new__(cls)
        job.arguments, job.kwargs = (), {}
        job.job_id, job.queue_name, job.priority = env.job_id, env.queue, env.priority
        job.executions, job.exception_executions = env.executions, env.exception_executions
        job.enqueued_ts = env.enqueued_at
        job.scheduled_at = _scheduled(env)
        job.run_at, job.envelope = env.run_at, env
        job.unique_key_override, job.duplicate, job.prerequisites = None, False, None
        return job

    #: what this run may ask of whoever runs it (execution.execute sets it); None: a run
    #: never cancelled, never interrupted, saving no progress (perform_now, inline)
    _context: "RunContext | None" = None
    _continuation: "Continuation | None" = None

    @property
    def cancelled(self) -> bool:
        """True once this job's cancellation was asked (:func:`djjobs.cancel`) while it
        runs. A job that can stop early checks it at safe points and raises
        :class:`~djjobs.errors.JobCancelled`: it then ends cancelled, not failed. Asked of
        storage at most once a second per run; always False outside a worker."""
        context = self._context
        return context is not None and context.is_cancelled()

    def step(self, name: str, cursor: Any = None) -> "Step":
        """A step of this job (``with self.step("rows", cursor=0) as step:``): skipped when an
        earlier run finished it, resumed at its stored cursor when one began it, else run
        from ``cursor``. ``step.checkpoint(cursor)`` records progress and is where a stopping
        worker interrupts the job (docs/continuations.md)."""
        if type(self).is_async:
            raise TypeError(f"{type(self).__qualname__}.step(): continuations are not supported on async jobs (their "
                            "checkpoints store progress with blocking storage calls). Split the work into jobs that "
                            "enqueue the next one, or make perform a plain `def` to use steps.")
        if self._continuation is None:
            from .continuations import Continuation, progress_of
            stored = progress_of(self.envelope.meta) if self.envelope is not None else None
            self._continuation = Continuation(self, stored, self._context, float(type(self).checkpoint_interval))
        return self._continuation.step(name, cursor)

    @property
    def enqueued_at(self) -> datetime | None:
        """When the job was enqueued (aware, local time zone), None before."""
        return datetime.fromtimestamp(self.enqueued_ts).astimezone() if self.enqueued_ts is not None else None

    @property
    def batch(self) -> "Batch | None":
        """The batch this job belongs to (docs/batches.md), to add jobs to it while it runs
        (``self.batch.add(...)`` or ``with self.batch:``); None outside a batch."""
        batch_id = self.envelope.meta.get("batch") if self.envelope is not None else None
        return Batch.existing(batch_id) if batch_id else None

    def load_arguments(self) -> None:
        args, kwargs = arguments.deserialize(self.envelope.args, self.envelope.kwargs)
        if "batch_event" in self.envelope.meta and args and isinstance(args[0], dict):
            args[0] = BatchStatus.from_dict(args[0])  # a batch callback's argument (batches.py)
        self.arguments, self.kwargs = tuple(args), kwargs

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} job_id={self.job_id} queue={self.queue_name}>"


PRIORITY_RANGE = range(-2**31, 2**31)  # a 32-bit integer, as the database adapter stores it


def check_priority(priority: Any, what: str = "priority") -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"{what} must be an int, got {priority!r}.")
    if priority not in PRIORITY_RANGE:
        raise ValueError(f"{what} must be between -2**31 and 2**31 - 1, got {priority}.")
    return priority


def _zone_meta(scheduled_at: datetime | None) -> dict:
    """Keep the cron entry's time zone with the tick, so the worker sees the same wall time."""
    key = getattr(scheduled_at.tzinfo, "key", None) if scheduled_at is not None else None
    return {"scheduled_tz": key} if key else {}


def _scheduled(env: Envelope) -> datetime | None:
    if not env.scheduled_at:
        return None
    zone = env.meta.get("scheduled_tz")
    try:
        return datetime.fromtimestamp(env.scheduled_at, ZoneInfo(zone)) if zone else \
            datetime.fromtimestamp(env.scheduled_at).astimezone()
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.fromtimestamp(env.scheduled_at).astimezone()


class ConfiguredJob(job_async.AsyncConfiguredAPI):
    """The result of ``Job.set(...)``: the same API with per-enqueue options."""

    def __init__(self, job_class: type[Job], **options: Any):
        self.job_class, self.options = job_class, options

    def perform_later(self, *args: Any, **kwargs: Any) -> Job:
        return self.job_class(*args, **kwargs).enqueue(**self.options)

    def perform_now(self, *args: Any, **kwargs: Any) -> Any:
        """Run here and now with these options (the queue and priority the job sees, and
        that a retry is enqueued with); a wait does not delay the run."""
        # not unique, waits for nothing: it runs now
        options = {k: v for k, v in self.options.items() if k in ("queue", "priority")}
        return self.job_class(*args, **kwargs).configure(**options)._perform_now()

    def new(self, *args: Any, **kwargs: Any) -> Job:
        """A configured instance, e.g. for :func:`perform_all_later`."""
        return self.job_class(*args, **kwargs).configure(**self.options)


def perform_all_later(jobs: Iterable[Job]) -> list[Job]:
    """Enqueue many jobs at once: one round trip per batch where the adapter can
    (``enqueue_many``). Every argument is serialized first, so a bad argument
    enqueues nothing. Returns the jobs (each with its ``job_id``)."""
    from .transaction import submit
    jobs = list(jobs)
    submit(jobs)
    return jobs
