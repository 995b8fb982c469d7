"""Rate limits through the public API: Job.rate_limit checked when a worker is about to
start the job, djjobs.limit() inside perform, checks; and with real worker processes."""
import time

import pytest

from djjobs import Job, RateLimited, limit, registry
from djjobs.adapters import use_adapter
from djjobs.adapters.memory import MemoryAdapter
from djjobs.checks import check_job_classes
from djjobs.worker.processor import process
from tests.fixtures.worker import wait_for
from tests.jobs import CALLS, record
from tests.worker_jobs import RateRecordJob


class StripeJob(Job):
    rate_limit = (2, 60)

    def rate_limit_key(self, account, n):
        return f"stripe:{account}"

    def perform(self, account, n):
        record("stripe", account, n)


class SharedLimitJob(Job):
    def perform(self, n):
        with limit("shared-api", rate=(1, 60)):
            record("called", n)


def run_all(adapter):
    claims = adapter.fetch(["default"], 100, 0, "w")
    for claim in claims:
        process(adapter, claim)
    return claims


def test_over_the_limit_a_job_is_rescheduled_without_running_or_using_an_attempt(caplog):
    adapter = MemoryAdapter()
    with use_adapter(adapter):
        for n in range(3):
            StripeJob.perform_later("acme", n)
        StripeJob.perform_later("other", 9)  # another key: its own window
        with caplog.at_level("INFO", logger="djjobs"):
            run_all(adapter)
    assert sorted(CALLS) == [("stripe", "acme", 0), ("stripe", "acme", 1), ("stripe", "other", 9)]
    [waiting] = adapter.jobs("scheduled").items
    assert waiting.envelope.args == ["acme", 2] and waiting.envelope.executions == 0
    assert waiting.envelope.exception_executions == {} and waiting.envelope.error is None
    assert waiting.at == pytest.approx(time.time() + 60, abs=2)
    assert "rescheduled tests.test_rate_limits.StripeJob" in caplog.text and "rate limit (2, 60)" in caplog.text
    assert adapter.counts().failed == 0


def test_limit_inside_perform_reschedules_like_retry_job():
    adapter = MemoryAdapter()
    with use_adapter(adapter):
        SharedLimitJob.perform_later(1)
        SharedLimitJob.perform_later(2)
        run_all(adapter)
    assert CALLS == [("called", 1)]
    [waiting] = adapter.jobs("scheduled").items
    assert waiting.envelope.args == [2] and waiting.at == pytest.approx(time.time() + 60, abs=2)
    assert adapter.counts().failed == 0


def test_limit_outside_a_job_raises_with_the_wait():
    with use_adapter(MemoryAdapter()):
        with limit("k", rate=(1, 30)):
            pass
        with pytest.raises(RateLimited) as info:
            with limit("k", rate=(1, 30)):
                raise AssertionError("the block must not run")
    assert 29 < info.value.wait <= 30 and info.value.key == "k"
    with pytest.raises(ValueError, match=r"must be \(limit, period\)"):
        with limit("k", rate=(0, 30)):
            pass


def test_bad_declarations_are_system_check_errors():
    class BadRate(Job):
        job_name = "tests.BadRate"
        rate_limit = (10, "minute")

        def perform(self):
            pass
    try:
        [error] = [e for e in check_job_classes() if e.id == "djjobs.E020"]
        assert "BadRate.rate_limit must be (limit, period)" in error.msg
    finally:
        registry._jobs.pop("tests.BadRate")


@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_ten_per_two_seconds_across_two_processes(backend, start_worker, tmp_path):
    """60 jobs on runjobs -p 2 -c 10: every job ran once, on its first execution (a job
    over the limit is rescheduled before it starts), and no 2-second window holds more than
    10 starts. The start times are written by the job just after the limit counted it, so
    they may lag its count by a little: 50 ms of slack."""
    trace = tmp_path / "trace"
    backend.adapter.enqueue_many([RateRecordJob(str(trace), f"j{i}").to_envelope() for i in range(60)])
    start_worker("-p", "2", "-c", "10")
    wait_for(lambda: trace.exists() and len(trace.read_text().splitlines()) >= 60, 120, "60 starts", interval=0.2)
    time.sleep(0.5)
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert sorted(f[1] for f in lines) == sorted(f"j{i}" for i in range(60))  # each once
    assert {f[3] for f in lines} == {"1"}  # no attempt used by the reschedules
    starts = sorted(float(f[2]) for f in lines)
    crowded = [(a, b) for a, b in zip(starts, starts[10:]) if b - a < 2.0 - 0.05]
    assert crowded == []
    assert starts[-1] - starts[0] >= 10  # 60 starts at 10 per 2 s take 10 s at least
    assert backend.adapter.counts().failed == 0
