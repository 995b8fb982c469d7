"""Test helpers, usable from pytest and from Django's TestCase.

Route jobs to a recording adapter with the ``enqueued_jobs`` pytest fixture,
:class:`JobsTestMixin` (for ``TestCase``), :func:`use_test_adapter`, or
``DJJOBS = {"ADAPTER": "test"}`` in test settings; then assert on what was
enqueued, or run it with :func:`perform_enqueued_jobs`.
"""
from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Iterator

import orjson

from ..adapters import get_adapter, use_adapter
from ..adapters.testing import TestAdapter
from ..arguments import serialize
from ..envelope import Envelope
from ..job import Job
from .continuations import Interruption, interrupt_jobs

__all__ = ["TestAdapter", "use_test_adapter", "JobsTestMixin", "assert_enqueued_with", "assert_enqueued_jobs",
           "assert_no_enqueued_jobs", "perform_enqueued_jobs", "enqueued_jobs", "drain_enqueued_jobs",
           "interrupt_jobs", "Interruption"]


@contextlib.contextmanager
def use_test_adapter() -> Iterator[TestAdapter]:
    """A fresh :class:`TestAdapter` receives every enqueue inside the block."""
    with use_adapter(TestAdapter()) as adapter:
        yield adapter


class JobsTestMixin:
    """For ``django.test.TestCase``: each test gets a fresh test adapter as ``self.jobs``."""

    def setUp(self) -> None:
        super().setUp()
        context = use_test_adapter()
        self.jobs = context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)


def current_test_adapter() -> TestAdapter:
    adapter = get_adapter()
    if not isinstance(adapter, TestAdapter):
        raise AssertionError(
            f"The djjobs test helpers need the test adapter, but the current one is {adapter.name!r}. "
            "Use the `enqueued_jobs` pytest fixture, JobsTestMixin, `with use_test_adapter():`, "
            "or DJJOBS = {'ADAPTER': 'test'} in your test settings.")
    return adapter


def enqueued_jobs(job: type[Job] | None = None, queue: str | None = None) -> list[Envelope]:
    """Every envelope enqueued so far (in order), optionally filtered."""
    return [env for env in current_test_adapter().enqueued
            if (job is None or env.job == job.job_name) and (queue is None or env.queue == queue)]


def assert_enqueued_jobs(count: int, *, job: type[Job] | None = None, queue: str | None = None) -> None:
    found = enqueued_jobs(job, queue)
    if len(found) != count:
        raise AssertionError(f"Expected {count} enqueued job(s){_filters(job, queue)}, found {len(found)}: "
                             + _listing(found))


def assert_no_enqueued_jobs(*, job: type[Job] | None = None, queue: str | None = None) -> None:
    assert_enqueued_jobs(0, job=job, queue=queue)


def assert_enqueued_with(*, job: type[Job] | None = None, args: tuple | list | None = None,
                         kwargs: dict | None = None, queue: str | None = None, priority: int | None = None,
                         at: datetime | float | None = None, tolerance: float = 1.0) -> Envelope:
    """Assert one enqueued job matches every criterion given; returns its envelope.
    ``args``/``kwargs`` compare as stored (model instances by reference); ``at``
    compares the run time within ``tolerance`` seconds."""
    want_args, want_kwargs = serialize(args or (), kwargs or {})
    at_ts = at.timestamp() if isinstance(at, datetime) else at
    candidates = enqueued_jobs(job, queue)
    for env in candidates:  # compared as JSON, so True is not 1 and 1 is not 1.0
        if args is not None and orjson.dumps(env.args) != orjson.dumps(want_args):
            continue
        if kwargs is not None and orjson.dumps(env.kwargs, option=orjson.OPT_SORT_KEYS) != orjson.dumps(
                want_kwargs, option=orjson.OPT_SORT_KEYS):
            continue
        if priority is not None and env.priority != priority:
            continue
        if at_ts is not None and (env.run_at is None or abs(env.run_at - at_ts) > tolerance):
            continue
        return env
    wanted = {k: v for k, v in dict(job=job and job.job_name, args=args, kwargs=kwargs, queue=queue,
                                     priority=priority, at=at).items() if v is not None}
    raise AssertionError(f"No enqueued job matches {wanted}. Enqueued: " + _listing(current_test_adapter().enqueued))


class perform_enqueued_jobs(contextlib.ContextDecorator):
    """Inside the block, jobs run when they are enqueued (in the caller, retries at
    once, waits ignored), including jobs those jobs enqueue. A job that fails for
    good raises its exception out of ``perform_later``. Jobs with steps run them, and
    resume at once when :func:`interrupt_jobs` interrupts them."""

    def __enter__(self) -> TestAdapter:
        self.adapter = current_test_adapter()
        self.adapter.performing += 1
        return self.adapter

    def __exit__(self, *exc: Any) -> None:
        self.adapter.performing -= 1


def drain_enqueued_jobs(*, include_scheduled: bool = True) -> int:
    """Run every job enqueued so far (and what they enqueue); returns how many ran."""
    return current_test_adapter().drain(include_scheduled=include_scheduled)


def _filters(job: type[Job] | None, queue: str | None) -> str:
    parts = ([f"job={job.job_name}"] if job else []) + ([f"queue={queue}"] if queue else [])
    return f" ({', '.join(parts)})" if parts else ""


def _listing(envelopes: list[Envelope]) -> str:
    if not envelopes:
        return "none"
    return "; ".join(f"{e.job}(args={e.args}, kwargs={e.kwargs}, queue={e.queue}, run_at={e.run_at})"
                     for e in envelopes[:20]) + (" ..." if len(envelopes) > 20 else "")
