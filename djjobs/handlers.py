"""``@retry_on`` / ``@discard_on`` and the default retry policy.

This module is the one owner of retry decisions: adapters and the worker
never retry on their own, they carry out what :func:`decide` returns.

Declarations are data on the class (``_djjobs_handlers``), inherited by
subclasses; a subclass' own declarations come before its parents'. Among one
class' decorators the first written (top to bottom) wins, like ActiveJob.
"""
from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from . import conf

if TYPE_CHECKING:
    from .job import Job

Wait = int | float | timedelta | str | Callable[[int, BaseException], float]


@dataclasses.dataclass(frozen=True)
class RetryOn:
    exceptions: tuple[type[BaseException], ...]
    wait: Wait = 3
    attempts: int = 5
    jitter: float = 0.15
    queue: str | None = None
    priority: int | None = None
    on_exhausted: Callable[["Job", BaseException], Any] | None = None

    @property
    def key(self) -> str:
        return ",".join(f"{e.__module__}.{e.__qualname__}" for e in self.exceptions)


@dataclasses.dataclass(frozen=True)
class DiscardOn:
    exceptions: tuple[type[BaseException], ...]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do after a failure: retry after ``delay`` seconds, discard, or kill (dead set)."""
    action: str  # "retry" | "discard" | "dead"
    delay: float = 0.0
    key: str = ""
    queue: str | None = None
    priority: int | None = None
    handler: RetryOn | None = None


def retry_on(*exceptions: type[BaseException], wait: Wait = 3, attempts: int = 5, jitter: float = 0.15,
             queue: str | None = None, priority: int | None = None,
             on_exhausted: Callable[["Job", BaseException], Any] | None = None):
    """Re-enqueue the job after ``wait`` when it raises one of ``exceptions``, up to
    ``attempts`` runs in all for these exceptions; then it fails for good (dead set),
    unless ``on_exhausted(job, exc)`` handles it.

    ``wait`` is seconds, a timedelta, ``"polynomially_longer"`` (executions**4 + 2 s)
    or a callable ``(executions, exc) -> seconds``. ``jitter`` adds up to that fraction
    of the wait at random, so retries of many jobs do not arrive together.
    """
    _check_exceptions("retry_on", exceptions)
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"retry_on(attempts=...) must be an int >= 1, got {attempts!r}.")
    if not 0 <= jitter <= 1:
        raise ValueError(f"retry_on(jitter=...) must be between 0 and 1, got {jitter!r}.")
    _check_wait(wait)
    if queue is not None:
        conf.check_queue_name(queue)
    if priority is not None:
        from .job import check_priority
        check_priority(priority, "retry_on(priority=...)")
    return _declare(RetryOn(tuple(exceptions), wait, attempts, jitter, queue, priority, on_exhausted))


def discard_on(*exceptions: type[BaseException]):
    """Drop the job (logged, ``after_discard(exc)`` called) when it raises one of ``exceptions``."""
    _check_exceptions("discard_on", exceptions)
    return _declare(DiscardOn(tuple(exceptions)))


def _declare(handler: RetryOn | DiscardOn):
    def decorate(cls):
        # Decorators apply bottom-up; prepending keeps the source (top-to-bottom) order.
        own = cls.__dict__.get("_djjobs_own_handlers", ())
        cls._djjobs_own_handlers = (handler, *own)
        return cls
    return decorate


def handlers_for(cls: type) -> list[RetryOn | DiscardOn]:
    result: list[RetryOn | DiscardOn] = []
    for klass in cls.__mro__:
        result.extend(klass.__dict__.get("_djjobs_own_handlers", ()))
    return result


def decide(job: "Job", exc: BaseException, rng: random.Random | None = None) -> Decision:
    """The one retry decision. ``job.exception_executions`` already counts this failure."""
    for handler in handlers_for(type(job)):
        if isinstance(exc, handler.exceptions):
            if isinstance(handler, DiscardOn):
                return Decision("discard")
            count = job.exception_executions.get(handler.key, 0)
            if count >= handler.attempts:
                return Decision("dead", key=handler.key, handler=handler)
            delay = with_jitter(wait_seconds(handler.wait, count, exc), handler.jitter, rng)
            return Decision("retry", delay, handler.key, handler.queue, handler.priority, handler)
    count = job.exception_executions.get(DEFAULT_KEY, 0)
    attempts = getattr(type(job), "retry_attempts", None)
    attempts = conf.get("RETRY_ATTEMPTS") if attempts is None else attempts
    if count >= attempts:
        return Decision("dead", key=DEFAULT_KEY)
    return Decision("retry", default_backoff(count, rng), DEFAULT_KEY)


DEFAULT_KEY = "default"


def matching_key(job: "Job", exc: BaseException) -> str | None:
    """The counter a failure increments: its retry_on declaration's, the default policy's, or None (discard)."""
    for handler in handlers_for(type(job)):
        if isinstance(exc, handler.exceptions):
            return handler.key if isinstance(handler, RetryOn) else None
    return DEFAULT_KEY


def wait_seconds(wait: Wait, executions: int, exc: BaseException) -> float:
    if wait == "polynomially_longer":
        return float(executions**4 + 2)
    if isinstance(wait, timedelta):
        return wait.total_seconds()
    if callable(wait):
        return float(wait(executions, exc))
    return float(wait)


def with_jitter(delay: float, jitter: float, rng: random.Random | None = None) -> float:
    """``delay`` plus up to ``jitter * delay`` at random: never less than ``delay``."""
    return delay + (rng or random).random() * jitter * delay if jitter else delay


def default_backoff(count: int, rng: random.Random | None = None) -> float:
    """Sidekiq's curve: count**4 + 15 s plus up to 10 * (count + 1) s at random
    (about 20 days over 25 attempts)."""
    return count**4 + 15 + (rng or random).random() * 10 * (count + 1)


def _check_exceptions(name: str, exceptions: tuple) -> None:
    if not exceptions:
        raise TypeError(f"@{name}() needs at least one exception class.")
    for exc in exceptions:
        if not (isinstance(exc, type) and issubclass(exc, BaseException)):
            raise TypeError(f"@{name}() takes exception classes, got {exc!r}.")


def _check_wait(wait: Any) -> None:
    if wait == "polynomially_longer" or callable(wait) or isinstance(wait, timedelta):
        return
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait >= 0:
        return
    raise ValueError(f"retry_on(wait=...) must be seconds >= 0, a timedelta, 'polynomially_longer' "
                     f"or a callable (executions, exc) -> seconds; got {wait!r}.")
