"""djjobs: background jobs for Django.

    from djjobs import Job, retry_on, discard_on

    class SendReceipt(Job):
        def perform(self, purchase): ...

    SendReceipt.perform_later(purchase)
"""
from .batch_status import BatchStatus
from .batches import Batch
from .cancellation import cancel, cancel_many
from .continuations import Step
from .errors import (BatchFinished, CheckpointError, ConfigurationError, DeserializationError, DjJobsError,
                     DuplicateJob, EnqueueError, JobCancelled, JobInterrupted, JobTimeout, PayloadError,
                     SerializationError, StepError, UnknownJobError, UnsupportedFeature, WorkerDied)
from .handlers import discard_on, retry_on
from .job_status import JobStatus, status
from .job import ConfiguredJob, Job, perform_all_later
from .job_async import aperform_all_later
from .ratelimits import RateLimited, limit

__version__ = "0.1.0"

__all__ = [
    "Job", "ConfiguredJob", "perform_all_later", "aperform_all_later", "retry_on", "discard_on", "get_adapter", "limit",
    "RateLimited", "cancel", "cancel_many", "status", "JobStatus", "JobCancelled", "Batch", "BatchStatus",
    "BatchFinished", "Step", "JobInterrupted",
    "StepError", "CheckpointError",
    "DjJobsError", "SerializationError", "DeserializationError", "PayloadError", "UnknownJobError",
    "EnqueueError", "DuplicateJob", "UnsupportedFeature", "ConfigurationError", "JobTimeout", "WorkerDied",
]


def get_adapter():
    """The configured adapter instance (see ``djjobs.adapters``)."""
    from .adapters import get_adapter as _get
    return _get()
