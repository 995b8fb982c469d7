"""Signals sent along a job's life. Every one is sent with ``sender`` = the
Job class (or ``None`` when the class could not be resolved) and ``job`` = the
Job instance where one exists, plus the keyword arguments documented below.

Receivers run in the process that sends: the enqueuing process for
``job_enqueued``/``job_enqueue_failed``, the worker for the rest. A receiver
that raises is logged and never changes the job's outcome.
"""
from django.dispatch import Signal

job_enqueued = Signal()        # job, envelope
job_enqueue_failed = Signal()  # envelope, exception (enqueue deferred to on_commit failed)
job_started = Signal()         # job
job_succeeded = Signal()       # job, duration
job_retried = Signal()         # job, exception, run_at
job_discarded = Signal()       # job, exception
job_failed = Signal()          # job (may be None), envelope, exception — failed for good (dead)
job_cancelled = Signal()       # job (None unless it was running), job_id, envelope — it will not run (again)
