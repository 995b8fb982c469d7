"""Prerequisites: ``SecondJob.set(after=[first, other]).perform_later(...)``.

The declaration travels in the envelope (``meta["after"] = {"ids": [...], "fails":
policy}``). What every adapter promises (``adapters/base.py``, the conformance suite):

- The job is stored at once. While a prerequisite has not ended it is ``waiting``: not
  fetched, not promoted. The step that stores its last prerequisite's success makes it
  ready (or scheduled, when its own run time is ahead) in that same atomic step.
- A prerequisite ends badly when it fails for good (dead), is discarded, cancelled or
  deleted. Then, by ``if_prerequisite_fails``: "dead" (the default) sends the job to the
  dead set without running it, its error a :class:`~djjobs.errors.PrerequisiteFailed`
  naming the prerequisite; "discard" forgets it; "run" runs it anyway once every
  prerequisite has ended. A job that ends so is itself a prerequisite that ended badly
  for the jobs waiting for it (the failure cascades down a chain).
- Enqueued after a prerequisite ended: a dead or cancelled one (still stored) counts as
  ended badly; one that finished, or that the storage does not know, as succeeded (a
  finished job is not remembered as a discard).
- Each prerequisite counts once per dependant (set membership, not a counter), so a
  prerequisite run twice (at-least-once) cannot release a dependant early.
"""
from __future__ import annotations

from typing import Any, Iterable

POLICIES = ("dead", "run", "discard")
MAX_PREREQUISITES = 100


def declaration(after: Any, if_fails: str | None) -> dict:
    """``meta["after"]`` for ``set(after=..., if_prerequisite_fails=...)``; raises TypeError or
    ValueError naming what is wrong."""
    policy = "dead" if if_fails is None else if_fails
    if policy not in POLICIES:
        raise ValueError(f"if_prerequisite_fails must be one of {', '.join(map(repr, POLICIES))}, got {if_fails!r}.")
    if isinstance(after, (str, bytes)) or not isinstance(after, Iterable):
        after = [after]
    ids: list[str] = []
    for item in after:
        job_id = item if isinstance(item, str) else getattr(item, "job_id", None)
        if not isinstance(job_id, str) or not job_id:
            raise TypeError(f"after= takes jobs (what perform_later returns) or job ids (str), got {item!r}.")
        if job_id not in ids:
            ids.append(job_id)
    if not ids:
        raise ValueError("after= names no job; leave it out to enqueue the job ready.")
    if len(ids) > MAX_PREREQUISITES:
        raise ValueError(f"after= names {len(ids)} jobs, over {MAX_PREREQUISITES}; make a job that waits for "
                         "batches of them, or use a Batch.")
    return {"ids": ids, "fails": policy}


def of(meta: dict | None) -> tuple[list[str], str] | None:
    """(prerequisite ids, policy) of a stored job, or None (none, or written malformed elsewhere)."""
    raw = meta.get("after") if meta else None
    if not isinstance(raw, dict):
        return None
    ids, policy = raw.get("ids"), raw.get("fails", "dead")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        return None
    return ids, policy if policy in POLICIES else "dead"


def failure(parent_id: str, how: str, at: float) -> dict:
    """The error stored with a job sent to the dead set because ``parent_id`` ended ``how``."""
    return {"class": "djjobs.errors.PrerequisiteFailed",
            "message": f"Prerequisite {parent_id} {describe(how)}; this job did not run.",
            "traceback": "", "failed_at": at}


def describe(how: str) -> str:
    return {"dead": "failed for good", "discarded": "was discarded", "cancelled": "was cancelled",
            "deleted": "was deleted"}.get(how, f"ended ({how})")
