"""Concurrency limits: at most ``concurrency_limit`` jobs with the same key run at once,
across every process and host.

A Job class declares ``concurrency_limit = 2`` (and optionally ``concurrency_key``,
computed at enqueue; default: the job's name). The declaration travels in the envelope
(``meta["concurrency"]``), so storage and workers need nothing else.

What every adapter promises (``adapters/base.py``, proven by the conformance suite):

- A job of a limited key takes one of its ``limit`` slots when it becomes ready (enqueue,
  promotion of a scheduled or retrying job, a retry by hand) and keeps it while it is
  ready or running, also when a stopping worker hands it back or lease recovery queues
  it again. When no slot is free it is **blocked**: stored, not failed, no attempt used,
  waiting in FIFO order per key, and not fetched. No worker polls for it.
- A slot is let go in the same atomic step as the job's outcome (success, discard,
  retry, reschedule, failure for good, deletion), and that same step makes the oldest
  blocked job of the key ready. A slot belongs to one job: letting it go twice does
  nothing (slots are job ids, not a counter), and a slot whose job is no longer ready or
  running is treated as free by every check, so nothing can leave a slot taken forever.
"""
from __future__ import annotations

from typing import Any

from .uniqueness import stored_key


def check_declaration(cls: type) -> list[str]:
    """What is wrong with a Job class' concurrency limit (system check djjobs.E020)."""
    limit = cls.concurrency_limit
    if limit is None:
        return []
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return [f"{cls.__qualname__}.concurrency_limit must be a positive int (jobs with one key that may run at "
                f"once), got {limit!r}."]
    return []


def slot_for(job: Any) -> dict | None:
    """The declaration for one enqueue of ``job`` (its ``meta["concurrency"]``), or None.
    Raises ValueError/TypeError naming the class for a bad declaration or key."""
    cls = type(job)
    if cls.concurrency_limit is None:
        return None
    problems = check_declaration(cls)
    if problems:
        raise ValueError(" ".join(problems))
    key = job.concurrency_key(*job.arguments, **job.kwargs)
    if key is None:
        key = cls.job_name
    elif not isinstance(key, str) or not key:
        raise TypeError(f"{cls.__qualname__}.concurrency_key() must return a non-empty str or None, got {key!r}.")
    return {"key": stored_key(key), "limit": cls.concurrency_limit}


def slot_of(meta: dict | None) -> tuple[str, int] | None:
    """(key, limit) of a stored job, or None (not limited, or written malformed elsewhere)."""
    raw = meta.get("concurrency") if meta else None
    if not isinstance(raw, dict):
        return None
    key, limit = raw.get("key"), raw.get("limit")
    if not isinstance(key, str) or not key or type(limit) is not int or limit < 1:
        return None
    return key, limit
