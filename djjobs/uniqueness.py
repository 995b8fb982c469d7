"""Unique jobs: when two enqueues are "the same job", and what the second one does.

A Job class opts in with ``unique_for`` (seconds, the longest a key may be held), or a
single enqueue with ``set(unique_key=...)``. The key travels in the envelope
(``meta["unique"]``), so every adapter, and every worker that later finishes the job,
reads the same declaration.

What every adapter promises (``adapters/base.py``, proven by the conformance suite):

- The check and the store are one atomic step: of concurrent enqueues with one key,
  exactly one is stored while the key is held.
- A key is held by the job that took it while that job is ready, scheduled, retrying,
  or running (``unique_until = "finish"``; with ``"start"`` it is let go when a worker
  claims the job), and never past ``unique_for`` seconds from its enqueue. It is free
  again when the job succeeds, is discarded, fails for good, is deleted or cancelled.
  Whether a key is held is decided from the holding job's own state at the moment of the
  check, so a worker that dies mid-release can never leave a key stuck: its job keeps the
  key until lease recovery decides its fate, and the key is free once the job is gone.
- ``unique_conflict``: ``"skip"`` (default) stores nothing and returns the holder (the
  returned Job has the holder's ``job_id`` and ``duplicate = True``); ``"raise"`` raises
  :class:`~djjobs.errors.DuplicateJob`; ``"replace"`` deletes a holder that has not
  started and stores the new job (a holder already running is left to finish, and the
  new job takes the key).
"""
from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from typing import Any

import orjson

UNTIL = ("finish", "start")
CONFLICTS = ("skip", "replace", "raise")
#: A key longer than this is stored as its SHA-256 digest (the database adapter indexes it).
MAX_STORED_KEY = 255
#: ``unique_for`` of a job made unique only by ``set(unique_key=...)``.
DEFAULT_UNIQUE_FOR = 86_400.0


@dataclasses.dataclass(frozen=True, slots=True)
class UniqueLock:
    """A job's uniqueness declaration as stored in its envelope."""
    key: str          # as stored (see :func:`stored_key`)
    expires: float    # epoch seconds: the key is free after this, whatever the job's state
    until: str        # "finish" | "start"
    conflict: str     # "skip" | "replace" | "raise"

    def as_meta(self) -> dict:
        return {"key": self.key, "expires": self.expires, "until": self.until, "conflict": self.conflict}


def lock_of(meta: dict) -> UniqueLock | None:
    """The declaration in an envelope's ``meta``, or None (also for one written malformed
    by another program: such a job is simply not unique)."""
    raw = meta.get("unique") if meta else None
    if not isinstance(raw, dict):
        return None
    key, expires, until, conflict = raw.get("key"), raw.get("expires"), raw.get("until"), raw.get("conflict")
    if not isinstance(key, str) or not key or type(expires) not in (int, float) or until not in UNTIL \
            or conflict not in CONFLICTS:
        return None
    return UniqueLock(key, float(expires), until, conflict)


def stored_key(key: str) -> str:
    """The key as every adapter stores it: as given, or its digest when it is long."""
    if len(key) <= MAX_STORED_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def default_key(job_name: str, args: list, kwargs: dict) -> str:
    """The job's name and its serialized arguments as canonical JSON (sorted keys): two
    enqueues with equal arguments (model instances compare by their reference) match."""
    return f"{job_name}:" + orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS).decode()


def check_declaration(cls: type) -> list[str]:
    """What is wrong with a Job class' uniqueness attributes (system check djjobs.E020)."""
    problems = []
    unique_for = cls.unique_for
    if unique_for is not None:
        value = unique_for.total_seconds() if isinstance(unique_for, timedelta) else unique_for
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            problems.append(f"{cls.__qualname__}.unique_for must be a positive number of seconds or a timedelta, "
                            f"got {unique_for!r}.")
    if cls.unique_until not in UNTIL:
        problems.append(f"{cls.__qualname__}.unique_until must be 'finish' or 'start', got {cls.unique_until!r}.")
    if cls.unique_conflict not in CONFLICTS:
        problems.append(f"{cls.__qualname__}.unique_conflict must be 'skip', 'replace' or 'raise', got "
                        f"{cls.unique_conflict!r}.")
    return problems


def lock_for(job: Any, args: list, kwargs: dict, now: float) -> UniqueLock | None:
    """The declaration for one enqueue of ``job`` (serialized ``args``/``kwargs`` given),
    or None when it is not unique. Raises TypeError/ValueError naming the class for a bad
    declaration or a ``unique_key`` that does not return a non-empty str."""
    cls = type(job)
    override = job.unique_key_override
    if cls.unique_for is None and override is None:
        return None
    problems = check_declaration(cls)
    if problems:
        raise ValueError(" ".join(problems))
    key = override if override is not None else job.unique_key(*job.arguments, **job.kwargs)
    if key is None:  # Job.unique_key's default
        key = default_key(cls.job_name, args, kwargs)
    elif not isinstance(key, str) or not key:
        raise TypeError(f"{cls.__qualname__}.unique_key() must return a non-empty str, got {key!r}.")
    unique_for = cls.unique_for if cls.unique_for is not None else DEFAULT_UNIQUE_FOR
    if isinstance(unique_for, timedelta):
        unique_for = unique_for.total_seconds()
    return UniqueLock(stored_key(key), now + float(unique_for), cls.unique_until, cls.unique_conflict)

