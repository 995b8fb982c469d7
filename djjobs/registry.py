"""Job name -> Job class. The worker runs only what is registered here.

A ``Job`` subclass registers itself when its class statement runs, under
``<module>.<qualname>`` (or its ``job_name`` attribute). Payloads carry that
name; resolving it never imports anything, so a forged payload can at most
name a class that this process already registered.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .errors import UnknownJobError

if TYPE_CHECKING:
    from .job import Job

logger = logging.getLogger("djjobs")
_jobs: dict[str, type["Job"]] = {}
_async = [False]  # whether any registered class is an async job (a worker then starts its event loop)
_lock = threading.Lock()


def register(cls: type["Job"]) -> None:
    name = cls.job_name
    with _lock:
        previous = _jobs.get(name)
        if previous is not None and previous is not cls and (
                previous.__module__, previous.__qualname__) != (cls.__module__, cls.__qualname__):
            raise UnknownJobError(
                f"Two Job classes want the name {name!r}: {previous.__module__}.{previous.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}. Give one a distinct `job_name`.")
        _jobs[name] = cls
        if getattr(cls, "is_async", False):
            _async[0] = True


def resolve(name: str) -> type["Job"]:
    try:
        return _jobs[name]
    except KeyError:
        raise UnknownJobError(
            f"{name!r} is not a registered Job class in this process. Job classes register when their module "
            "is imported: define them in <app>/jobs.py of an installed app (autodiscovered), or import their "
            "module from your AppConfig.ready(). A payload naming anything else is refused.") from None


def lookup(name: str) -> type["Job"] | None:
    return _jobs.get(name)


def registered() -> dict[str, type["Job"]]:
    return dict(_jobs)


def has_async() -> bool:
    """Whether an async job class (``async def perform``) was ever registered here."""
    return _async[0]
