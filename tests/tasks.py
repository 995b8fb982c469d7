"""Plain django.tasks functions run by djjobs (autodiscovered: TASKS uses djjobs)."""
import asyncio

from django.tasks import task

from tests.jobs import record


@task
def add(a, b):
    record("add", a, b)
    return a + b


@task(priority=10, queue_name="mailers")
def important(x):
    record("important", x)
    return x


@task(takes_context=True)
def with_context(context, label):
    record("context", label, context.attempt)
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
def explode():
    raise ValueError("task failed on purpose")


@task(retry_on=(ConnectionError,), attempts=3, wait=5, jitter=0)
def flaky(fail_times):
    from tests.jobs import CALLS
    calls = sum(1 for c in CALLS if c[0] == "flaky-task")
    record("flaky-task", calls)
    if calls < fail_times:
        raise ConnectionError(f"attempt {calls + 1}")
    return "recovered"


@task
async def async_double(x):
    await asyncio.sleep(0)
    return x * 2


@task
def huge():
    return 2**70
