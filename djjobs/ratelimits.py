"""Rate limits: at most ``limit`` job starts (or calls) per ``period`` seconds per key,
across every process and host.

Two ways in:

- a Job class declares ``rate_limit = (100, 60)`` (and optionally ``rate_limit_key``):
  a worker about to start such a job counts the start first; over the limit, the job is
  rescheduled for the earliest moment the limit allows (not a failure, no attempt used,
  nothing of it ran), logged at INFO as ``rescheduled … (rate limit …)``;
- any code inside ``perform`` wraps a call with ``with djjobs.limit("stripe", rate=(100, 60)):``
  which raises :class:`RateLimited` when over the limit; the job is then rescheduled like
  ``retry_job(wait=…)``.

Promise (every durable adapter, ``Adapter.take_rate``): an exact sliding window. Of the
starts counted under one key, no ``period``-long window ever holds more than ``limit``
(no burst at a window's edge, as fixed windows and token buckets allow). What is counted
is starts: a job that then fails or is retried counts as one use, its retry as another.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from datetime import timedelta
from typing import Any, Iterator

from .job import Reschedule
from .uniqueness import stored_key


class RateLimited(Reschedule):
    """Raised by :func:`limit` over the limit: the job runs again after ``wait`` seconds
    (the earliest the limit allows), like ``retry_job``; not a failure."""

    def __init__(self, key: str, wait: float):
        super().__init__(wait)
        self.key = key

    def __str__(self) -> str:
        return f"rate limit {self.key!r} reached; runs again in {self.wait:.3f} s"


def parse_rate(rate: Any, what: str) -> tuple[int, float]:
    """``(limit, period)`` checked: a positive int and a positive number of seconds (or a
    timedelta). Raises ValueError naming ``what`` otherwise."""
    if isinstance(rate, (tuple, list)) and len(rate) == 2:
        limit, period = rate
        if isinstance(period, timedelta):
            period = period.total_seconds()
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 \
                and isinstance(period, (int, float)) and not isinstance(period, bool) and math.isfinite(period) \
                and period > 0:
            return limit, float(period)
    raise ValueError(f"{what} must be (limit, period): a positive int and a positive number of seconds (or a "
                     f"timedelta), e.g. (100, 60) for 100 per minute; got {rate!r}.")


def check_declaration(cls: type) -> list[str]:
    """What is wrong with a Job class' rate limit (system check djjobs.E020)."""
    if cls.rate_limit is None:
        return []
    try:
        parse_rate(cls.rate_limit, f"{cls.__qualname__}.rate_limit")
    except ValueError as exc:
        return [str(exc)]
    return []


def start_wait(adapter: Any, envelope: Any, job_class: type | None) -> float:
    """Count the start of ``envelope``'s job under its class' rate limit: 0 when it may
    start now, else the seconds until it may (nothing counted). 0 for a class without one."""
    rate = getattr(job_class, "rate_limit", None)
    if rate is None:
        return 0.0
    limit_, period = parse_rate(rate, f"{job_class.__qualname__}.rate_limit")
    key = envelope.meta.get("rate_key") if envelope.meta else None
    key = key if isinstance(key, str) and key else job_class.job_name
    return adapter.take_rate(stored_key(key), limit_, period, f"{envelope.job_id}:{os.urandom(4).hex()}")


@contextlib.contextmanager
def limit(key: str, *, rate: tuple[int, float] | tuple[int, timedelta]) -> Iterator[None]:
    """Count one use of ``key`` (at most ``rate[0]`` per ``rate[1]`` seconds, shared by every
    process); over the limit, raise :class:`RateLimited` before the block runs. Inside a
    job the job is then rescheduled for the earliest moment the limit allows; elsewhere,
    catch it (``.wait`` says how long)."""
    from .adapters import get_adapter
    if not isinstance(key, str) or not key:
        raise TypeError(f"limit() needs a non-empty str key, got {key!r}.")
    limit_, period = parse_rate(rate, "limit(rate=...)")
    wait = get_adapter().take_rate(stored_key(key), limit_, period, f"call:{time.time()!r}:{os.urandom(6).hex()}")
    if wait > 0:
        raise RateLimited(key, wait)
    yield
