"""Batches (djjobs/batches.py): the API, its errors, the test helpers, the inline adapter and
the transaction rules. (Adapter behaviour: tests/conformance/test_batches.py; real workers:
tests/test_batch_workers.py.)"""
import pytest
from django.db import transaction

import djjobs
from djjobs import Batch, BatchFinished, BatchStatus, Job, discard_on, perform_all_later
from djjobs.adapters import use_adapter
from djjobs.adapters.inline import InlineAdapter
from djjobs.testing import perform_enqueued_jobs

LOG: list = []


class RowJob(Job):
    def perform(self, n, fail=False):
        if fail:
            raise ValueError(f"row {n}")
        LOG.append(("row", n))


@discard_on(KeyError)
class GoneJob(Job):
    def perform(self):
        raise KeyError("gone")


class GrowJob(Job):
    """Adds rows to its own batch while it runs."""

    def perform(self, more):
        assert self.batch is not None
        self.batch.add(*(RowJob(100 + i) for i in range(more)))
        with self.batch:
            RowJob.perform_later(200)
        LOG.append(("grew", more))


class Report(Job):
    queue_name = "reports"

    def perform(self, status):
        assert isinstance(status, BatchStatus)
        LOG.append((status.event, status.total, status.succeeded, status.failed, status.complete))


class Unique(Job):
    unique_for = 60

    def perform(self, status):
        pass


@pytest.fixture(autouse=True)
def clean_log():
    LOG.clear()


def test_a_drain_runs_the_jobs_then_each_callback_once_with_the_status(enqueued_jobs):
    with Batch("Import", on_complete=Report, on_success=Report, on_death=Report, properties={"file": "a.csv"}) as batch:
        for n in range(3):
            RowJob.perform_later(n)
        perform_all_later([RowJob(n) for n in range(3, 5)])
    status = Batch.status(batch.id)
    assert (status.total, status.pending, status.closed, status.complete) == (5, 5, True, False)
    assert batch.status().description == "Import" and status.properties == {"file": "a.csv"}
    enqueued_jobs.drain()
    assert sorted(e for e in LOG if e[0] == "row") == [("row", n) for n in range(5)]
    assert [e for e in LOG if e[0] != "row"] == [("complete", 5, 5, 0, True), ("success", 5, 5, 0, True)]
    final = Batch.status(batch.id)
    assert final.complete and final.success and final.progress == 1.0
    assert [env.job for env in enqueued_jobs.enqueued].count(Report.job_name) == 2
    assert {env.queue for env in enqueued_jobs.enqueued if env.job == Report.job_name} == {"reports"}


def test_a_failure_for_good_fires_on_death_and_no_success(enqueued_jobs):
    with Batch(on_complete=Report, on_success=Report, on_death=Report) as batch:
        RowJob.perform_later(1)
        RowJob.perform_later(2, fail=True)
        GoneJob.perform_later()
    with pytest.raises(ValueError):
        enqueued_jobs.drain()
    enqueued_jobs.drain()
    events = [e[0] for e in LOG if e[0] != "row"]
    assert events == ["death", "complete"]
    status = Batch.status(batch.id)
    assert (status.dead, status.discarded, status.succeeded, status.success) == (1, 1, 1, False)
    assert enqueued_jobs.batch_failures(batch.id) != []


def test_a_job_adds_to_its_batch_and_the_batch_waits_for_them(enqueued_jobs):
    with Batch(on_complete=Report) as batch:
        GrowJob.perform_later(2)
    enqueued_jobs.drain()
    assert ("grew", 2) in LOG and ("row", 100) in LOG and ("row", 200) in LOG
    assert LOG[-1] == ("complete", 4, 4, 0, True)
    assert Batch.status(batch.id).total == 4


def test_an_empty_batch_completes_at_once(enqueued_jobs):
    with Batch(on_complete=Report, on_success=Report) as batch:
        pass
    assert Batch.status(batch.id).complete
    enqueued_jobs.drain()
    assert LOG == [("complete", 0, 0, 0, True), ("success", 0, 0, 0, True)]


def test_adding_to_a_complete_batch_raises_and_stores_nothing(enqueued_jobs):
    with Batch() as batch:
        pass
    with pytest.raises(BatchFinished, match=batch.id) as caught:
        batch.add(RowJob(1))
    assert caught.value.batch_id == batch.id and enqueued_jobs.enqueued == []
    with pytest.raises(BatchFinished):
        with Batch.existing("never-opened"):
            RowJob.perform_later(1)


def test_bad_callbacks_and_properties_say_what_is_wrong():
    with pytest.raises(TypeError, match="on_complete must be a Job subclass"):
        Batch(on_complete=print)
    with pytest.raises(TypeError, match="unique or concurrency-limited"):
        Batch(on_success=Unique)
    with pytest.raises(TypeError, match="only queue= and priority="):
        Batch(on_death=Report.set(wait=5))
    with pytest.raises(TypeError, match="JSON-serialisable"):
        Batch(properties={"when": object()})
    with pytest.raises(TypeError, match="batch id"):
        Batch.status(3)
    with pytest.raises(RuntimeError, match="Open the batch first"):
        Batch().add(RowJob(1))
    assert Batch.status("no-such-batch") is None


def test_a_callback_queue_and_priority_come_from_set(enqueued_jobs):
    with Batch(on_complete=Report.set(queue="urgent", priority=7)):
        pass
    (env,) = [e for e in enqueued_jobs.enqueued if e.job == Report.job_name]
    assert (env.queue, env.priority) == ("urgent", 7)


def test_perform_enqueued_jobs_settles_each_job_and_runs_the_callbacks(enqueued_jobs):
    with perform_enqueued_jobs():
        with Batch(on_complete=Report, on_success=Report) as batch:
            RowJob.perform_later(1)
            RowJob.perform_later(2)
            assert LOG == [("row", 1), ("row", 2)]
    assert LOG[2:] == [("complete", 2, 2, 0, True), ("success", 2, 2, 0, True)]
    assert Batch.status(batch.id).complete


def test_the_inline_adapter_runs_callbacks_when_the_batch_is_done():
    with use_adapter(InlineAdapter()):
        with Batch(on_complete=Report, on_death=Report) as batch:
            RowJob.perform_later(1)
            with pytest.raises(ValueError):
                RowJob.perform_later(2, fail=True)
        assert LOG == [("row", 1), ("death", 2, 1, 1, False), ("complete", 2, 1, 1, True)]
        assert djjobs.Batch.status(batch.id).dead == 1


@pytest.mark.django_db(transaction=True)
def test_inside_atomic_on_redis_nothing_is_stored_until_the_commit_and_a_rollback_leaves_nothing(redis_adapter):
    with use_adapter(redis_adapter):
        with transaction.atomic():
            with Batch(on_complete=Report) as batch:
                RowJob.perform_later(1)
            assert redis_adapter.batch_status(batch.id) is None and redis_adapter.counts().enqueued == 0
        status = redis_adapter.batch_status(batch.id)
        assert (status.total, status.closed) == (1, True)
        with pytest.raises(ZeroDivisionError):
            with transaction.atomic():
                with Batch(on_complete=Report) as rolled_back:
                    RowJob.perform_later(2)
                1 / 0
        assert redis_adapter.batch_status(rolled_back.id) is None
        assert redis_adapter.counts().enqueued == 1


@pytest.mark.django_db(transaction=True)
def test_on_the_database_adapter_the_batch_joins_the_transaction(database_sqlite_adapter):
    database_adapter = database_sqlite_adapter
    with use_adapter(database_adapter):
        with pytest.raises(ZeroDivisionError):
            with transaction.atomic():
                with Batch(on_complete=Report) as batch:
                    RowJob.perform_later(1)
                assert database_adapter.batch_status(batch.id).total == 1
                1 / 0
        assert database_adapter.batch_status(batch.id) is None
        assert database_adapter.counts().enqueued == 0
