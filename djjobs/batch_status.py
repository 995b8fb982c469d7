"""What a batch is, as every adapter reports it, and which batch new jobs join.

Sits below the job layer: :class:`BatchStatus` is plain data (the argument a batch's
callbacks receive, and what :meth:`djjobs.Batch.status` returns), and the batch a job
joins at enqueue is this context's (:func:`current`), set by ``with batch:``.

Counting rules (every adapter): a job counts in its batch from the step that stores it,
and is settled once, by the step that ends it for good: succeeded, dead (failed for good,
or its prerequisite failed), discarded (``discard_on``, or deleted by hand) or
cancelled. Retries, reschedules, releases and lease recovery are not ends. A job that ran
twice (at-least-once) is still settled once: only the step that ends it settles it.
"""
from __future__ import annotations

import contextvars
import dataclasses
from datetime import datetime
from typing import Any

EVENTS = ("complete", "success", "death")
#: The callback envelope's single argument before it is stored: replaced by the batch
#: status in the step that fires the callback (adapters, and the Redis scripts, by text).
STATUS_PLACEHOLDER = "djjobs:batch-status"

_current: contextvars.ContextVar["Any | None"] = contextvars.ContextVar("djjobs_batch", default=None)


def current() -> "Any | None":
    """The :class:`djjobs.Batch` jobs enqueued here join (innermost ``with batch:``), or None."""
    return _current.get()


def enter(batch: Any) -> contextvars.Token:
    return _current.set(batch)


def leave(token: contextvars.Token) -> None:
    _current.reset(token)


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts).astimezone() if ts is not None else None


@dataclasses.dataclass(frozen=True)
class BatchStatus:
    """A batch's counts at one moment.

    ``total`` jobs joined it; ``pending`` have not ended yet; ``succeeded``, ``dead``,
    ``discarded`` and ``cancelled`` ended so (``failed`` is the three bad ends together).
    ``closed``: its ``with`` block has exited (it cannot complete before). ``complete``:
    closed and nothing pending (``on_complete`` fired); ``success``: complete and every job
    succeeded (``on_success`` fired). ``event`` is set on the status a callback receives:
    which callback it is ("complete", "success" or "death"). ``callbacks`` maps each event to
    the job id its callback has (or will have) when it fires."""

    id: str
    description: str = ""
    total: int = 0
    pending: int = 0
    succeeded: int = 0
    dead: int = 0
    discarded: int = 0
    cancelled: int = 0
    closed: bool = False
    created_ts: float = 0.0
    completed_ts: float | None = None
    properties: dict = dataclasses.field(default_factory=dict)
    callbacks: dict = dataclasses.field(default_factory=dict)
    event: str | None = None

    @property
    def failed(self) -> int:
        return self.dead + self.discarded + self.cancelled

    @property
    def complete(self) -> bool:
        return self.completed_ts is not None

    @property
    def success(self) -> bool:
        return self.complete and self.failed == 0

    @property
    def created_at(self) -> datetime:
        return _when(self.created_ts)

    @property
    def completed_at(self) -> datetime | None:
        return _when(self.completed_ts)

    @property
    def progress(self) -> float:
        """The share of its jobs that ended, 0.0 to 1.0 (1.0 for an empty batch)."""
        return 1.0 if not self.total else (self.total - self.pending) / self.total

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "BatchStatus":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})

    def __repr__(self) -> str:
        state = "complete" if self.complete else ("closed" if self.closed else "open")
        return (f"<BatchStatus {self.id} {state} total={self.total} pending={self.pending} "
                f"succeeded={self.succeeded} failed={self.failed}>")


def fired_status(status: BatchStatus, event: str, now: float) -> dict:
    """The argument of the ``event`` callback fired now (complete and success: the batch is
    complete as of now)."""
    completed = status.completed_ts if status.completed_ts is not None else (now if event != "death" else None)
    return dataclasses.replace(status, event=event, completed_ts=completed).to_dict()
