"""Tables of the database adapter (jobs, counters, registry, cron, results) and
the admin's permission anchor. Times are epoch seconds (floats) taken from
the adapter's clock, so every adapter decides "due" and "expired" the same way.
"""
from django.db import models
from django.db.models import Q

from .admin_models import Dashboard  # noqa: F401


class JobRow(models.Model):
    """One job. ``payload`` holds the envelope's bytes unchanged (bytea/blob:
    byte-exact, NUL characters included); the other columns index it."""

    job_id = models.CharField(max_length=64, unique=True)
    job_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=100)
    priority = models.IntegerField(default=0)
    state = models.CharField(max_length=10)  # ready scheduled retry running blocked waiting dead cancelled finished
    position = models.BigIntegerField(default=0)  # FIFO key within a priority; negative = front
    run_at = models.FloatField(null=True)
    enqueued_at = models.FloatField()
    updated_at = models.FloatField()  # last state change: claimed, failed (dead), finished
    attempts = models.IntegerField(default=0)
    lease_owner = models.CharField(max_length=200, null=True)
    lease_token = models.CharField(max_length=64, null=True)
    lease_until = models.FloatField(null=True)
    error = models.TextField(default="", blank=True)
    payload = models.BinaryField()
    # Unique jobs (djjobs/uniqueness.py): the key, while this row may hold it (see the
    # adapter), until when at most, and whether it is let go when the job starts.
    unique_key = models.CharField(max_length=255, null=True)
    unique_expires = models.FloatField(null=True)
    unique_start = models.BooleanField(default=False, db_default=False)
    # Concurrency limits (djjobs/concurrency.py): the key and its limit. The key's slots are
    # its rows in state ready or running; over the limit a row waits in state blocked.
    concurrency_key = models.CharField(max_length=255, null=True)
    concurrency_limit = models.IntegerField(null=True)
    # Cancellation (djjobs/cancellation.py): when it was asked, for a running job; the step that
    # stores the run's outcome honours it (the adapter's _move).
    cancel_requested = models.FloatField(null=True)
    # Prerequisites (djjobs/prerequisites.py): a waiting row's prerequisites not ended yet (one
    # djjobs_dependency row each) and its policy; a row some job waits for has has_dependants.
    prereqs_pending = models.IntegerField(null=True)
    prereq_policy = models.CharField(max_length=8, null=True)
    has_dependants = models.BooleanField(default=False, db_default=False)
    # Batches (djjobs/batches.py): the batch it joined (kept on a dead or cancelled row, for the
    # batch's list of failures); while it is pending there it also has a djjobs_batch_job row, and
    # has_dependants (its end is settled, not acknowledged plainly).
    batch_id = models.CharField(max_length=64, null=True)

    class Meta:
        db_table = "djjobs_job"
        indexes = [
            models.Index(fields=["queue", "-priority", "position", "id"], condition=Q(state="ready"),
                         name="djjobs_job_fetch"),
            models.Index(fields=["queue", "enqueued_at"], condition=Q(state="ready"), name="djjobs_job_latency"),
            # Partial indexes: a row is in one only while its state needs it, so an enqueue or a
            # claim writes few index entries (a claim changes indexed columns: no HOT update).
            models.Index(fields=["state", "run_at"], condition=Q(state__in=["scheduled", "retry"]),
                         name="djjobs_job_due_at"),
            models.Index(fields=["state", "lease_until"], condition=Q(state="running"), name="djjobs_job_leases"),
            models.Index(fields=["state", "updated_at"], condition=Q(state__in=["finished", "dead", "cancelled"]),
                         name="djjobs_job_ended"),
            models.Index(fields=["concurrency_key", "state", "position"], condition=Q(concurrency_key__isnull=False),
                         name="djjobs_job_concurrency"),
            models.Index(fields=["state", "position"], condition=Q(state="waiting"), name="djjobs_job_waiting"),
            models.Index(fields=["batch_id", "state"], condition=Q(batch_id__isnull=False), name="djjobs_job_batch"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["unique_key"], condition=Q(unique_key__isnull=False),
                                    name="djjobs_job_unique_key"),
        ]


class BatchRow(models.Model):
    """One batch (djjobs/batches.py): its counts (one UPDATE of this row settles a job, so two
    jobs ending at once are counted one after the other), whether its ``with`` block has exited,
    when it completed, and its callbacks' envelopes (JSON text by event) and the events fired."""

    batch_id = models.CharField(max_length=64, unique=True)
    description = models.TextField(default="", blank=True)
    created_at = models.FloatField()
    closed = models.BooleanField(default=False)
    completed_at = models.FloatField(null=True)
    total = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    succeeded = models.BigIntegerField(default=0)
    dead = models.BigIntegerField(default=0)
    discarded = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    properties = models.TextField(default="{}")
    callbacks = models.TextField(default="{}")
    callback_ids = models.TextField(default="{}")
    fired = models.CharField(max_length=40, default="", blank=True)

    class Meta:
        db_table = "djjobs_batch"
        indexes = [models.Index(fields=["created_at"], name="djjobs_batch_created"),
                   models.Index(fields=["completed_at"], condition=Q(completed_at__isnull=False),
                                name="djjobs_batch_completed"),
                   models.Index(fields=["created_at"], condition=Q(completed_at__isnull=True), name="djjobs_batch_open")]


class BatchMember(models.Model):
    """A job pending in a batch: deleted by the step that ends the job, which settles it
    (the DELETE's rowcount makes a job counted once, however often it ends)."""

    job_id = models.CharField(max_length=64, primary_key=True)
    batch_id = models.CharField(max_length=64)

    class Meta:
        db_table = "djjobs_batch_job"


class DailyStat(models.Model):
    day = models.CharField(max_length=10, primary_key=True)  # ISO date
    processed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    class Meta:
        db_table = "djjobs_dailystat"


class PausedQueue(models.Model):
    name = models.CharField(max_length=100, primary_key=True)

    class Meta:
        db_table = "djjobs_pausedqueue"


class WorkerRow(models.Model):
    worker_id = models.CharField(max_length=200, primary_key=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField()
    started_at = models.FloatField()
    heartbeat_at = models.FloatField()
    busy = models.JSONField(default=list)

    class Meta:
        db_table = "djjobs_worker"


class CronTick(models.Model):
    name = models.CharField(max_length=200)
    tick_at = models.FloatField()
    claimed_at = models.FloatField()

    class Meta:
        db_table = "djjobs_crontick"
        constraints = [models.UniqueConstraint(fields=["name", "tick_at"], name="djjobs_crontick_once")]


class CronState(models.Model):
    name = models.CharField(max_length=200, primary_key=True)
    state = models.JSONField(default=dict)

    class Meta:
        db_table = "djjobs_cronstate"


class TaskResultRow(models.Model):
    job_id = models.CharField(max_length=64, primary_key=True)
    data = models.BinaryField()
    expires_at = models.FloatField(db_index=True)

    class Meta:
        db_table = "djjobs_taskresult"


class RateWindow(models.Model):
    """One rate-limit key's sliding window (djjobs/ratelimits.py): the times of the starts
    counted in its last ``period`` seconds, as a JSON list; the row is locked while a start
    is counted, so concurrent workers count one at a time."""
    name = models.CharField(max_length=255, primary_key=True)
    rate_limit = models.IntegerField()
    period = models.FloatField()
    starts = models.TextField(default="[]")

    class Meta:
        db_table = "djjobs_ratewindow"


class ConcurrencyKey(models.Model):
    """A concurrency key in use: its row is locked by every step that admits, blocks or
    lets go of one of its jobs, so those steps happen one at a time per key."""
    name = models.CharField(max_length=255, primary_key=True)
    concurrency_limit = models.IntegerField()

    class Meta:
        db_table = "djjobs_concurrencykey"


class Dependency(models.Model):
    """One job waiting for one prerequisite (djjobs/prerequisites.py): deleted in the step that
    ends the prerequisite, which is how each prerequisite counts once per dependant."""
    child_id = models.CharField(max_length=64)
    parent_id = models.CharField(max_length=64)

    class Meta:
        db_table = "djjobs_dependency"
        indexes = [models.Index(fields=["parent_id"], name="djjobs_dependency_parent")]
        constraints = [models.UniqueConstraint(fields=["child_id", "parent_id"], name="djjobs_dependency_edge")]
