"""Every public exception djjobs raises, in one place.

Each message names what is wrong and what to do about it; callers should be
able to act on the text alone.
"""
from __future__ import annotations

from typing import Sequence


class DjJobsError(Exception):
    """Base class of every djjobs error."""


class SerializationError(DjJobsError, TypeError):
    """An argument cannot be stored in a job payload (raised at enqueue time)."""


class DeserializationError(DjJobsError):
    """A stored argument cannot be turned back into a value when the job runs,
    most often because a referenced model row has been deleted since enqueue.
    Discard such jobs with ``@discard_on(DeserializationError)``."""


class PayloadError(DjJobsError):
    """A stored payload is not a valid djjobs envelope (corrupt or foreign)."""


class UnknownJobError(DjJobsError):
    """A payload names a job that is not a registered ``Job`` subclass."""


class EnqueueError(DjJobsError):
    """The adapter could not store the job (broker down, payload too large...).

    ``stored`` and ``not_stored`` list job ids when the adapter knows each job's fate
    (a bulk refused part way, e.g. at Redis ``maxmemory``: the stored ones will run;
    send the others again). Both are empty when it does not, or when the error came
    before anything was sent (the message says which)."""

    def __init__(self, message: str = "", *, stored: Sequence[str] = (), not_stored: Sequence[str] = ()):
        super().__init__(message)
        self.stored: list[str] = list(stored)
        self.not_stored: list[str] = list(not_stored)


class UnsupportedFeature(EnqueueError):
    """The configured adapter cannot do what the enqueue asks (e.g. schedule)."""


class ConfigurationError(DjJobsError):
    """``settings.DJJOBS`` is invalid; the system checks report the same."""


class JobTimeout(DjJobsError):
    """A job ran longer than its ``timeout``."""


class WorkerDied(DjJobsError):
    """The worker running a job died (SIGKILL, OOM, host loss) before it finished."""


class DuplicateJob(EnqueueError):
    """A unique job (``unique_conflict = "raise"``) was not stored: a job holding the same
    uniqueness key is queued, scheduled, retrying or running. ``job_id`` is the holder's,
    ``key`` the key."""

    def __init__(self, message: str = "", *, job_id: str = "", key: str = ""):
        super().__init__(message, not_stored=())
        self.job_id, self.key = job_id, key


class JobCancelled(BaseException):
    """Raised in a running job whose cancellation was asked (:func:`djjobs.cancel`): by
    ``step.checkpoint()``, or by the job itself after it sees ``self.cancelled``. The job
    ends ``cancelled``: terminal, not a failure, never retried. A BaseException (like
    ``asyncio.CancelledError``) so that a job's own ``except Exception`` cannot swallow it."""


class PrerequisiteFailed(DjJobsError):
    """A job's prerequisite (``set(after=...)``) failed for good, was discarded, cancelled or
    deleted, so the job was sent to the dead set without running (``if_prerequisite_fails``
    "dead", the default). The stored error names the prerequisite and how it ended."""


class BatchFinished(EnqueueError):
    """A job was enqueued into a batch that is complete (its ``on_complete`` has fired), or
    that storage does not know (never opened, or pruned ``BATCH_RETENTION_SECONDS`` after
    it completed). Nothing of that enqueue was stored. ``batch_id`` names the batch."""

    def __init__(self, message: str = "", *, batch_id: str = ""):
        super().__init__(message, not_stored=())
        self.batch_id = batch_id
class JobInterrupted(BaseException):
    """Raised by ``step.checkpoint()`` (or at the start of a step) when the worker running the
    job is stopping (SIGTERM, quiet): the job is stored again with its progress, ready, and
    resumes where it stopped on any worker. Not a failure and not an attempt: no retry is
    counted. A BaseException so that a job's own ``except Exception`` cannot swallow it
    (docs/continuations.md)."""


class StepError(DjJobsError):
    """A continuation's steps misused (docs/continuations.md): a step inside another, a
    name used twice in one run, steps found in another order than the stored progress
    says (the code changed between runs), or a checkpoint outside its step."""


class CheckpointError(DjJobsError):
    """A checkpoint that cannot be recorded: inside an open ``transaction.atomic()`` (the
    progress would outlive work that may roll back), or with a cursor that is not JSON."""
