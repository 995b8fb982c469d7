"""Async jobs (``async def perform``) outside a worker: which classes are accepted, the
async counterpart of execute (hooks, retries, timeouts, model arguments), perform_now and
aperform_now, the a-prefixed enqueue API, and the inline, async-thread and test adapters."""
import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async

import djjobs
from djjobs import Job, JobTimeout, discard_on, retry_on
from djjobs.adapters import use_adapter
from djjobs.adapters.async_thread import AsyncAdapter
from djjobs.adapters.inline import InlineAdapter
from djjobs.envelope import Envelope
from djjobs.execution import DEAD, DISCARDED, RESCHEDULED, RETRY, SUCCEEDED, execute
from djjobs.execution_async import aexecute, references_models
from djjobs.testing import perform_enqueued_jobs
from tests.models import Article

EVENTS = []


@pytest.fixture(autouse=True)
def _clear_events():
    EVENTS.clear()


class AsyncEcho(Job):
    async def before_perform(self):
        EVENTS.append("before")

    def after_perform(self):  # a plain hook on an async job is called as on a sync one
        EVENTS.append("after")

    async def around_perform(self, run):
        EVENTS.append("around-in")
        result = await run()
        EVENTS.append("around-out")
        return result

    async def after_outcome(self, outcome):
        await asyncio.sleep(0)
        EVENTS.append(("outcome", outcome.kind))

    async def perform(self, value):
        await asyncio.sleep(0.001)
        EVENTS.append(("perform", value, threading.current_thread().name))
        return value * 2


class FailingOnce(Exception):
    pass


@retry_on(FailingOnce, wait=5, attempts=3)
@discard_on(KeyError)
class AsyncDecisions(Job):
    retry_attempts = 1  # (the default policy would retry the ValueError)
    async def after_discard(self, exc):
        EVENTS.append(("discarded", type(exc).__name__))

    async def perform(self, what):
        await asyncio.sleep(0)
        if what == "retry":
            raise FailingOnce("again")
        if what == "discard":
            raise KeyError("gone")
        if what == "reschedule":
            self.retry_job(wait=30)
        if what == "dead":
            raise ValueError("for good")
        return what


class AsyncSlow(Job):
    retry_attempts = 1

    async def perform(self, seconds):
        await asyncio.sleep(seconds)


class AsyncArticle(Job):
    async def perform(self, article):
        fresh = await Article.objects.aget(pk=article.pk)
        return fresh.title


class AsyncSteps(Job):
    async def perform(self):
        with self.step("one"):
            pass


# --- classes ----------------------------------------------------------------------
def test_an_async_perform_makes_an_async_job_and_sync_ones_stay_sync():
    assert AsyncEcho.is_async and not djjobs.Job.is_async
    assert not type("PlainJob", (Job,), {"perform": lambda self: None, "__module__": __name__}).is_async


@pytest.mark.parametrize("hook", ["before_perform", "after_perform", "around_perform", "after_discard", "after_outcome"])
def test_a_coroutine_hook_on_a_sync_job_is_refused_naming_what_to_do(hook):
    async def body(self, *args):
        return None

    with pytest.raises(TypeError, match=rf"SyncHooked\.{hook} is `async def` but SyncHooked\.perform is a plain "
                                        r"`def`.*Make `perform` `async def` too") as caught:
        type("SyncHooked", (Job,), {"perform": lambda self: None, hook: body, "__module__": __name__})
    assert "never run" in str(caught.value)
    from djjobs import registry
    assert registry.lookup(f"{__name__}.SyncHooked") is None


def test_an_async_generator_perform_is_refused():
    async def perform(self):
        yield 1

    with pytest.raises(TypeError, match=r"AGen\.perform is an async generator"):
        type("AGen", (Job,), {"perform": perform, "__module__": __name__})


# --- running -------------------------------------------------------------------------
def test_perform_now_outside_a_loop_runs_the_coroutine_with_its_hooks_awaited():
    assert AsyncEcho.perform_now(21) == 42
    assert EVENTS[:2] == ["around-in", "before"] and EVENTS[2][:2] == ("perform", 21)
    assert EVENTS[3:] == ["after", "around-out", ("outcome", "succeeded")]


def test_perform_now_on_a_running_loop_is_refused_with_what_to_do():
    async def main():
        AsyncEcho.perform_now(1)

    with pytest.raises(RuntimeError, match=r"async job.*is running an event loop.*await AsyncEcho\.aperform_now"):
        asyncio.run(main())
    assert EVENTS == []  # nothing ran, and no coroutine was left un-awaited


def test_aperform_now_runs_on_the_running_loop():
    async def main():
        return await AsyncEcho.aperform_now(5), threading.current_thread().name

    result, thread = asyncio.run(main())
    assert result == 10 and EVENTS[2] == ("perform", 5, thread)


def test_the_shared_outcome_rules_hold_for_async_jobs():
    def run(what):
        return execute(Envelope(job=AsyncDecisions.job_name, args=[what]))

    retry = run("retry")
    assert retry.kind == RETRY and retry.run_at > time.time() + 4 and retry.envelope.exception_executions
    assert run("discard").kind == DISCARDED and EVENTS == [("discarded", "KeyError")]
    assert run("reschedule").kind == RESCHEDULED
    dead = run("dead")
    assert dead.kind == DEAD and dead.envelope.error["class"] == "builtins.ValueError"
    assert run("fine").kind == SUCCEEDED


def test_a_timeout_cancels_the_task_and_fails_the_job_with_job_timeout():
    env = Envelope(job=AsyncSlow.job_name, args=[5])
    started = time.monotonic()
    outcome = asyncio.run(aexecute(env, timeout=0.05))
    assert time.monotonic() - started < 2
    assert outcome.kind == DEAD and isinstance(outcome.error, JobTimeout)
    assert "exceeded its timeout of 0.05 s" in outcome.envelope.error["message"]


def test_a_cancellation_from_outside_is_not_an_outcome():
    async def main():
        task = asyncio.ensure_future(aexecute(Envelope(job=AsyncSlow.job_name, args=[5])))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


@pytest.mark.django_db
def test_model_arguments_are_loaded_off_the_loop_and_the_async_orm_sees_the_callers_transaction():
    article = Article.objects.create(title="async")
    env = AsyncArticle(article).to_envelope()
    assert references_models(env.args, env.kwargs) and not references_models([1, {"a": [2]}], {})
    assert AsyncArticle.perform_now(article) == "async"


def test_steps_are_refused_on_async_jobs():
    outcome = execute(Envelope(job=AsyncSteps.job_name))
    assert outcome.kind == DEAD or outcome.kind == RETRY
    assert "continuations are not supported on async jobs" in outcome.envelope.error["message"]


def test_cancelled_is_false_outside_a_worker():
    class Probe(Job):
        async def perform(self):
            return self.cancelled

    assert Probe.perform_now() is False


# --- enqueue from async code ------------------------------------------------------------
def test_the_a_prefixed_enqueue_api_records_like_the_sync_one(enqueued_jobs):
    async def main():
        loop_thread = threading.current_thread()
        one = await AsyncEcho.aperform_later(1)
        two = await AsyncEcho.set(queue="mailers", priority=3).aperform_later(2)
        many = await djjobs.aperform_all_later([AsyncEcho(3), AsyncEcho.set(wait=60).new(4)])
        return loop_thread, one, two, many

    loop_thread, one, two, many = asyncio.run(main())
    envs = enqueued_jobs.enqueued
    assert [e.args for e in envs] == [[1], [2], [3], [4]]
    assert [e.job_id for e in envs] == [one.job_id, two.job_id, *(j.job_id for j in many)]
    assert (envs[1].queue, envs[1].priority) == ("mailers", 3) and envs[3].run_at > time.time() + 50
    assert EVENTS == []  # stored, not run


def test_an_async_enqueue_does_not_block_the_loop(enqueued_jobs, monkeypatch):
    """The enqueue runs in a thread: the loop goes on meanwhile."""
    from djjobs import transaction
    real = transaction.submit

    def slow_submit(jobs):
        time.sleep(0.3)
        real(jobs)

    monkeypatch.setattr(transaction, "submit", slow_submit)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        await AsyncEcho.aperform_later(1)
        tick.cancel()
        return ticks

    assert asyncio.run(main()) >= 10
    assert len(enqueued_jobs.enqueued) == 1


@pytest.mark.django_db(transaction=True)
def test_enqueue_after_commit_is_unchanged_from_a_sync_to_async_transaction(enqueued_jobs):
    from django.db import transaction

    def in_transaction():
        with transaction.atomic():
            AsyncEcho.perform_later(1)
            assert enqueued_jobs.enqueued == []  # waits for the commit
    asyncio.run(sync_to_async(in_transaction)())
    assert [e.args for e in enqueued_jobs.enqueued] == [[1]]


# --- adapters ----------------------------------------------------------------------------
def test_the_inline_adapter_runs_async_jobs_and_refuses_a_sync_enqueue_on_a_loop():
    with use_adapter(InlineAdapter()):
        AsyncEcho.perform_later(1)
        assert ("outcome", "succeeded") in EVENTS

        async def main():
            with pytest.raises(RuntimeError, match="aperform_later"):
                AsyncEcho.perform_later(2)
            await AsyncEcho.aperform_later(3)
        asyncio.run(main())
    assert [e[1] for e in EVENTS if isinstance(e, tuple) and e[0] == "perform"] == [1, 3]


def test_the_async_thread_adapter_runs_async_jobs():
    adapter = AsyncAdapter()
    try:
        with use_adapter(adapter):
            AsyncEcho.perform_later(7)
            assert adapter.wait_idle(5)
    finally:
        adapter.close()
    assert [e for e in EVENTS if isinstance(e, tuple) and e[0] == "perform"][0][:2] == ("perform", 7)


def test_the_test_adapter_runs_async_jobs(enqueued_jobs):
    with perform_enqueued_jobs():
        AsyncEcho.perform_later(8)
    AsyncEcho.perform_later(9)
    assert enqueued_jobs.drain() == 1
    assert [e[1] for e in EVENTS if isinstance(e, tuple) and e[0] == "perform"] == [8, 9]


def test_async_concurrency_settings_are_validated(settings):
    from djjobs import conf
    settings.DJJOBS = {"ASYNC_CONCURRENCY": 0, "ASYNC_LAG_WARNING": "fast"}
    problems = {message for _, message, _ in conf.validate()}
    assert "DJJOBS['ASYNC_CONCURRENCY'] = 0 is below its minimum, 1." in problems
    assert any("ASYNC_LAG_WARNING" in p and "must be int or float" in p for p in problems)
