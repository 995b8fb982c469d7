"""django.tasks on djjobs: the backend contract, results through their life, retries,
registry safety. (End-to-end with real workers: tests/test_worker_tasks.py.)"""
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.test import override_settings
from django.utils import timezone

from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.envelope import Envelope
from djjobs.worker.processor import process
from tests import tasks
from tests.fixtures.core import FakeClock


@pytest.fixture
def adapter():
    with use_adapter(MemoryAdapter()) as a:
        yield a


def work(adapter, queues=("default", "mailers", "low"), rounds=10):
    """Run what is ready, like a worker would (in this process)."""
    for _ in range(rounds):
        claims = adapter.fetch(list(queues), 100, 0, "w1")
        if not claims:
            return
        for claim in claims:
            process(adapter, claim)


def test_backend_declares_what_it_supports():
    backend = task_backends["default"]
    assert type(backend).__name__ == "JobsBackend"
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result,
            backend.supports_priority) == (True, True, True, True)


def test_enqueue_run_and_result(adapter):
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.enqueued_at is not None
    fetched = tasks.add.get_result(result.id)
    assert (fetched.status, fetched.args) == (TaskResultStatus.READY, [2, 3])
    work(adapter)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.started_at <= result.finished_at and result.last_attempted_at == result.started_at
    assert result.attempts == 1 and len(result.worker_ids) == 1
    assert result.errors == []


def test_failure_records_the_error(adapter):
    result = tasks.explode.enqueue()
    work(adapter)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError and "task failed on purpose" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value
    assert adapter.counts().dead == 1  # no retry by default, like Django


def test_retry_declarations_apply_to_tasks(adapter):
    result = tasks.flaky.enqueue(2)
    work(adapter)
    result.refresh()
    assert result.status == TaskResultStatus.READY and len(result.errors) == 1
    record = adapter.get(result.id)
    assert record.state == "retry"
    adapter.retry_now([result.id])
    work(adapter)
    adapter.retry_now([result.id])
    work(adapter)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "recovered"
    assert result.attempts == 3 and len(result.errors) == 2


def test_priority_queue_and_defer(adapter):
    later = tasks.add.using(run_after=timezone.now() + timedelta(minutes=5)).enqueue(1, 1)
    low = tasks.add.using(priority=-10).enqueue(0, 1)
    high = tasks.add.using(priority=50).enqueue(0, 2)
    assert adapter.get(later.id).state == "scheduled"
    order = [c.envelope.job_id for c in adapter.fetch(["default"], 10, 0, "w")]
    assert order == [high.id, low.id]
    assert adapter.get(tasks.important.enqueue(7).id).queue == "mailers"


def test_takes_context_sees_the_attempt(adapter):
    result = tasks.with_context.enqueue("x")
    work(adapter)
    result.refresh()
    assert result.return_value == {"attempt": 1, "id": result.id}


def test_async_task_functions_run(adapter):
    """An async def task is an async job (a worker runs it on its event loop)."""
    from djjobs.tasks import job_class_for
    assert job_class_for(tasks.async_double).is_async and not job_class_for(tasks.add).is_async
    result = tasks.async_double.enqueue(21)
    work(adapter)
    result.refresh()
    assert result.return_value == 42


def test_aenqueue_and_aget_result(adapter):
    async def scenario():
        result = await tasks.add.aenqueue(1, 2)
        return result, await tasks.add.aget_result(result.id)
    result, fetched = async_to_sync(scenario)()
    assert fetched.id == result.id and fetched.status == TaskResultStatus.READY


def test_unknown_result_id():
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("nope")


def test_invalid_tasks_are_refused():
    with pytest.raises(InvalidTask, match="Queue 'elsewhere' is not valid"):
        tasks.add.using(queue_name="elsewhere")
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=1000)
    with pytest.raises(InvalidTask, match="JSON"):
        tasks.add.enqueue(object(), 1)


def test_only_decorated_functions_run(adapter):
    adapter.enqueue(Envelope(job="djjobs.tasks:os.system", args=["echo pwned"]))
    work(adapter)
    [dead] = adapter.jobs("dead").items
    assert dead.envelope.error["class"] == "djjobs.errors.UnknownJobError"


def test_enqueue_on_commit_option(adapter, django_capture_on_commit_callbacks):
    from django.db import transaction
    with override_settings(TASKS={"default": {"BACKEND": "djjobs.tasks.JobsBackend",
                                              "OPTIONS": {"ENQUEUE_ON_COMMIT": True}}}):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            with transaction.atomic():
                result = task_backends["default"].enqueue(tasks.add, (1, 2), {})
        assert adapter.counts().enqueued == 0 and len(callbacks) == 1
        callbacks[0]()
        assert adapter.get(result.id).state == "ready"


pytestmark = pytest.mark.django_db


def test_a_result_beyond_64_bits_is_stored(adapter):
    """Django's JSON rules allow integers of any size; the record must carry them too."""
    result = tasks.huge.enqueue()
    work(adapter)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2**70


def test_a_task_that_cannot_start_fails(adapter):
    """A job for a task function the worker does not know goes to the dead set without
    running: its result is FAILED (Django: "unable to start"), not READY forever."""
    result = tasks.add.enqueue(1, 2)
    [claim] = adapter.fetch(["default"], 1, 0, "w1")
    claim.envelope.job = "djjobs.tasks:tests.tasks.gone_meanwhile"
    process(adapter, claim)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.finished_at is not None
    assert result.errors[0].exception_class_path == "djjobs.errors.UnknownJobError"


def test_a_deferred_result_outlives_the_ttl_until_it_can_run(adapter):
    adapter.clock = clock = FakeClock()
    later = tasks.add.using(run_after=timezone.now() + timedelta(days=2)).enqueue(1, 1)
    clock.advance(25 * 3600)  # past the default RESULT_TTL of a day, before run_after
    assert tasks.add.get_result(later.id).status == TaskResultStatus.READY


def test_a_task_whose_worker_died_every_time_fails(adapter):
    adapter.clock = clock = FakeClock()
    result = tasks.add.enqueue(1, 2)
    for _ in range(adapter.setting("MAX_WORKER_DEATHS")):
        assert adapter.fetch(["default"], 1, 0, "w1")
        clock.advance(adapter.setting("LEASE_SECONDS") + 1)
        adapter.recover_expired()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "djjobs.errors.WorkerDied"
