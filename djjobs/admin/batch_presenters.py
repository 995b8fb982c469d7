"""What the admin shows of a batch (docs/batches.md): its figures, state, progress bar,
properties and callbacks, safe for whatever storage holds.

Like presenters.py for jobs, every function here returns something to show for any
:class:`~djjobs.BatchStatus` (a count that is no number, a description that is no text,
properties that are no dict) and never raises, so one odd batch cannot take the Batches
page down for everyone."""
from __future__ import annotations

import math
import numbers
from typing import Any

from ..batch_status import EVENTS
from ..masking import masked
from .presenters import MAX_PAYLOAD_CHARS, _json, short, text, when

COUNTS = ("total", "pending", "succeeded", "dead", "discarded", "cancelled")
#: The longest batch id djjobs writes or accepts (djjobs.batches._checked_id).
MAX_BATCH_ID = 64


def count(value: Any) -> int:
    """A stored count as a whole number, 0 when it is none (or no number at all)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return 0
    try:
        return max(0, int(value)) if math.isfinite(value) else 0
    except (OverflowError, ValueError, TypeError):
        return 0


def state(status: Any) -> str:
    """open (its ``with`` block runs), closed (block exited, jobs pending), complete (every
    job ended, some not succeeded), success (every job succeeded)."""
    completed = getattr(status, "completed_ts", None)
    if isinstance(completed, numbers.Real) and not isinstance(completed, bool):
        return "success" if sum(count(getattr(status, n, 0)) for n in ("dead", "discarded", "cancelled")) == 0 \
            else "complete"
    return "closed" if getattr(status, "closed", False) is True else "open"


def batch(status: Any) -> dict:
    """One batch as the Batches page, its own page, the job page and the dashboard show it."""
    figures = {name: count(getattr(status, name, 0)) for name in COUNTS}
    total = figures["total"]
    failed = figures["dead"] + figures["discarded"] + figures["cancelled"]
    ended = max(0, min(total, total - figures["pending"]))
    batch_id = text(getattr(status, "id", ""))
    description = text(getattr(status, "description", ""))

    def share(n: int) -> float:
        return 100.0 * min(n, total) / total if total else 0.0

    return {
        "id": batch_id, "description": description, "label": short(description or batch_id, 120),
        **figures, "failed": failed, "ended": ended, "state": state(status),
        # an empty batch has ended all of its (no) jobs: 100 %, as BatchStatus.progress says
        "percent": math.floor(100 * ended / total) if total else 100,
        "succeeded_width": f"{share(figures['succeeded']):.1f}", "failed_width": f"{share(failed):.1f}",
        "created_at": when(getattr(status, "created_ts", None)),
        "completed_at": when(getattr(status, "completed_ts", None)),
    }


def properties(status: Any) -> str:
    """The batch's properties as indented JSON, secret-looking keys masked as job
    arguments are (DJJOBS['ADMIN_SECRET_ARGUMENTS'])."""
    value = getattr(status, "properties", None)
    try:
        return short(_json(masked(value), indent=2), MAX_PAYLOAD_CHARS)
    except (TypeError, ValueError, RecursionError):
        return short(repr(value), MAX_PAYLOAD_CHARS)


def callbacks(status: Any) -> list[tuple[str, str]]:
    """(event, job id) of each callback the batch has, in the order they can fire."""
    found = getattr(status, "callbacks", None)
    found = found if isinstance(found, dict) else {}
    return [(event, found[event]) for event in EVENTS if isinstance(found.get(event), str) and found[event]]


def fired(figures: dict, event: str) -> str:
    """Whether a callback has been stored: "yes", "not yet", or "never" (on_success of a batch
    that completed with a failed job)."""
    if event == "death":
        return "yes" if figures["dead"] else "not yet"
    if figures["state"] == "success":
        return "yes"
    if figures["state"] == "complete":
        return "yes" if event == "complete" else "never"
    return "not yet"


def of_job(meta: Any) -> tuple[str | None, tuple[str, str] | None]:
    """From a job's ``meta``: the id of the batch it belongs to, and (batch id, event) when
    it is a batch's callback; None for either when it says nothing usable."""
    meta = meta if isinstance(meta, dict) else {}
    member = meta.get("batch")
    member = member if isinstance(member, str) and 0 < len(member) <= MAX_BATCH_ID else None
    event = meta.get("batch_event")
    callback = None
    if isinstance(event, dict):
        bid, name = event.get("batch"), event.get("event")
        if isinstance(bid, str) and 0 < len(bid) <= MAX_BATCH_ID and name in EVENTS:
            callback = (bid, name)
    return member, callback


#: Batches on the dashboard.
DASHBOARD_SHOWN = 5


def job_context(adapter, record) -> dict:
    """What the job page shows of batches: the batch the job belongs to (with its figures
    now, or only its id once the batch is pruned) and, for a callback, its batch and event."""
    member, callback = of_job(getattr(record.envelope, "meta", None))

    def figures(batch_id):
        status = adapter.batch_status(batch_id)
        return batch(status) if status is not None else {"id": batch_id, "label": batch_id,
                                                                          "missing": True}

    return {"batch": figures(member) if member else None,
            "batch_event": ({"event": callback[1], **figures(callback[0])} if callback else None)}


def dashboard_context(adapter) -> dict:
    """The newest batches for the dashboard (one adapter call; nothing shown without any)."""
    page = adapter.batches(page=1, per_page=DASHBOARD_SHOWN)
    return {"latest_batches": [batch(s) for s in page.items], "batches_total": page.total}
