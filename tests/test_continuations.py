"""Continuations (djjobs/continuations.py): the step API, its progress in every outcome, the
transaction and cursor rules, durable saves and their throttle, and the test helpers."""
import datetime as dt
import sys

import pytest
from django.db import transaction

from djjobs import CheckpointError, Job, JobCancelled, StepError
from djjobs.execution import CANCELLED, INTERRUPTED, RETRY, SUCCEEDED, execute
from djjobs.run_context import RunContext
from djjobs.testing import interrupt_jobs, perform_enqueued_jobs

LOG: list = []
FAILED: set = set()  # rows that failed once (each fails only the first time)


class ImportJob(Job):
    retry_attempts = 3

    def perform(self, rows, fail_at=None):
        LOG.append("begin")
        with self.step("download"):
            LOG.append("download")
        with self.step("rows", cursor=0) as step:
            for i in range(step.cursor, rows):
                if i == fail_at and i not in FAILED:
                    FAILED.add(i)
                    LOG.append(("row", i))
                    raise ValueError(f"row {i} failed")
                LOG.append(("row", i))
                step.checkpoint(i + 1)
        with self.step("notify"):
            LOG.append("notify")


class OneLinerJob(Job):
    def perform(self):
        with self.step("a"): LOG.append("a")  # noqa: E701 (a body on the with line is skipped too)
        with self.step("b"):
            pass
        LOG.append("end")


class CursorJob(Job):
    def perform(self, cursor):
        with self.step("s") as step:
            step.checkpoint(cursor)


class NestedJob(Job):
    def perform(self):
        with self.step("outer"):
            with self.step("inner"):
                pass


class TwiceJob(Job):
    def perform(self):
        with self.step("x"):
            pass
        with self.step("x"):
            pass


class OutsideJob(Job):
    def perform(self):
        with self.step("x") as step:
            pass
        step.checkpoint(1)


class AtomicJob(Job):
    def perform(self, using="default"):
        with self.step("s") as step:
            with transaction.atomic(using=using):
                step.checkpoint(1)


class AtomicStepJob(Job):
    def perform(self):
        with transaction.atomic():
            with self.step("s"):
                LOG.append("s")


class SavingJob(Job):
    checkpoint_interval = 0

    def perform(self, n):
        with self.step("a"):
            pass
        with self.step("b", cursor=0) as step:
            for i in range(step.cursor, n):
                step.checkpoint(i + 1)


class ThrottledJob(SavingJob):
    checkpoint_interval = 3600


def envelope_of(job_class, *args, progress=None, executions=0):
    env = job_class(*args).to_envelope()
    env.executions = executions
    if progress is not None:
        env.meta["progress"] = progress
    return env


def rows_done():
    return [e[1] for e in LOG if isinstance(e, tuple)]


@pytest.fixture(autouse=True)
def clear_log():
    LOG.clear()
    FAILED.clear()


def test_steps_run_in_order_once():
    ImportJob.perform_now(3)
    assert LOG == ["begin", "download", ("row", 0), ("row", 1), ("row", 2), "notify"]


def test_a_resumed_run_skips_finished_steps_and_starts_at_the_stored_cursor():
    env = envelope_of(ImportJob, 5, progress={"completed": ["download"], "current": ["rows", 3], "resumptions": 1})
    outcome = execute(env)
    assert outcome.kind == SUCCEEDED
    assert LOG == ["begin", ("row", 3), ("row", 4), "notify"]


def test_a_finished_step_on_one_line_or_with_an_empty_body_is_skipped():
    env = envelope_of(OneLinerJob, progress={"completed": ["a", "b"], "resumptions": 0})
    assert execute(env).kind == SUCCEEDED
    assert LOG == ["end"]


def test_skipping_a_step_leaves_an_installed_tracer_in_place():
    seen = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name == "perform":
            seen.append(event)
        return tracer
    env = envelope_of(ImportJob, 2, progress={"completed": ["download", "rows"]})
    sys.settrace(tracer)
    try:
        outcome = execute(env)
        still = sys.gettrace()
    finally:
        sys.settrace(None)
    assert outcome.kind == SUCCEEDED and still is tracer
    assert LOG == ["begin", "notify"] and "return" in seen


def test_an_interrupted_run_keeps_its_progress_and_is_not_an_attempt():
    stop = [False]
    env = envelope_of(ImportJob, 10, executions=2)

    def stopping():
        return stop[0] or (rows_done() == [0, 1, 2, 3] and not stop.__setitem__(0, True))
    outcome = execute(env, context=RunContext(stopping=stopping))
    assert outcome.kind == INTERRUPTED
    stored = outcome.envelope
    assert stored.executions == 2 and stored.run_at is None and stored.job_id == env.job_id
    assert stored.meta["progress"] == {"completed": ["download"], "current": ["rows", 4], "resumptions": 1}
    assert "progress" not in env.meta  # the claimed envelope is left as it was
    LOG.clear()
    assert execute(stored).kind == SUCCEEDED
    assert LOG == ["begin"] + [("row", i) for i in range(4, 10)] + ["notify"]


def test_a_stopping_worker_interrupts_at_the_start_of_the_next_step():
    env = envelope_of(ImportJob, 2)
    outcome = execute(env, context=RunContext(stopping=lambda: "download" in LOG and not rows_done()))
    assert outcome.kind == INTERRUPTED
    assert outcome.envelope.meta["progress"] == {"completed": ["download"], "resumptions": 1}


def test_a_cancel_request_stops_the_job_at_its_next_checkpoint():
    outcome = execute(envelope_of(ImportJob, 10), context=RunContext(cancelled=lambda: rows_done() == [0, 1]))
    assert outcome.kind == CANCELLED and isinstance(outcome.error, JobCancelled)
    assert outcome.envelope.meta["progress"]["current"] == ["rows", 2]
    assert rows_done() == [0, 1]


def test_a_failed_run_is_retried_from_its_last_checkpoint_with_finished_steps_kept():
    outcome = execute(envelope_of(ImportJob, 6, 3))
    assert outcome.kind == RETRY
    assert outcome.envelope.meta["progress"] == {"completed": ["download"], "current": ["rows", 3], "resumptions": 0}
    assert outcome.envelope.executions == 1
    LOG.clear()
    assert execute(outcome.envelope.copy(run_at=None)).kind == SUCCEEDED
    assert LOG == ["begin", ("row", 3), ("row", 4), ("row", 5), "notify"]


def test_perform_now_retries_in_the_caller_keep_the_progress(enqueued_jobs):
    with perform_enqueued_jobs():
        ImportJob.perform_later(5, 2)
    assert LOG.count("download") == 1 and LOG.count("notify") == 1
    assert rows_done() == [0, 1, 2, 2, 3, 4]  # row 2 failed once, and only it ran again


def test_interrupt_jobs_at_a_checkpoint_resumes_without_repeating_work(enqueued_jobs):
    with perform_enqueued_jobs(), interrupt_jobs(at_checkpoint=3) as interrupts:
        job = ImportJob.perform_later(6)
    assert LOG.count("download") == 1 and LOG.count("notify") == 1 and LOG.count("begin") == 2
    assert rows_done() == [0, 1, 2, 3, 4, 5]
    [hit] = interrupts.interruptions
    assert (hit.job_id, hit.step, hit.cursor, hit.after_step) == (job.job_id, "rows", 3, None)


def test_interrupt_jobs_after_a_step_and_repeatedly_in_a_drain(enqueued_jobs):
    ImportJob.perform_later(4)
    with interrupt_jobs(after_step="download") as interrupts:
        assert enqueued_jobs.drain() == 1
    assert LOG.count("download") == 1 and rows_done() == [0, 1, 2, 3]
    assert interrupts.interruptions[0].after_step == "download" and interrupts.interruptions[0].step is None
    LOG.clear()
    with perform_enqueued_jobs(), interrupt_jobs(at_checkpoint=1, times=None) as every:
        ImportJob.perform_later(4)
    assert rows_done() == [0, 1, 2, 3] and [i.cursor for i in every.interruptions] == [1, 2, 3, 4]
    assert LOG.count("begin") == 5


def test_interrupt_jobs_needs_one_point():
    with pytest.raises(TypeError):
        interrupt_jobs()
    with pytest.raises(ValueError):
        interrupt_jobs(at_checkpoint=0)


@pytest.mark.parametrize("cursor", [(1, 2), dt.datetime(2026, 1, 1), float("nan"), object(), {1: "a"}, 2**70])
def test_a_cursor_must_be_plain_json(cursor):
    with pytest.raises(CheckpointError, match="not plain JSON"):
        CursorJob().perform(cursor)


@pytest.mark.parametrize("cursor", [None, 3, 2.5, "k", [1, [2, "x"]], {"id": 4, "page": [1, None]}, True])
def test_plain_json_cursors_are_accepted(cursor):
    CursorJob().perform(cursor)


@pytest.mark.parametrize("job_class, message", [(NestedJob, "do not nest"), (TwiceJob, "already ran"),
                                                (OutsideJob, "outside its `with` block")])
def test_misused_steps_raise_step_error(job_class, message):
    with pytest.raises(StepError, match=message):
        job_class().perform()


def test_steps_that_changed_since_the_progress_was_stored_raise_step_error():
    env = envelope_of(ImportJob, 3, progress={"completed": [], "current": ["pages", 3]})
    outcome = execute(env)
    assert outcome.kind == RETRY and isinstance(outcome.error, StepError)
    assert "resumes step 'pages'" in str(outcome.error)
    env = envelope_of(ImportJob, 3, progress={"completed": ["rows"]})
    outcome = execute(env)
    assert isinstance(outcome.error, StepError) and "changed order" in str(outcome.error)
    outcome = execute(envelope_of(ImportJob, 3, progress={"completed": "download"}))
    assert isinstance(outcome.error, StepError) and "malformed" in str(outcome.error)


@pytest.mark.django_db(databases="__all__")
def test_a_checkpoint_inside_atomic_is_refused_on_any_alias():
    # (the test's own transactions, Django's TestCase's, do not count)
    CursorJob().perform(1)
    for alias in ("default", "postgres"):
        with pytest.raises(CheckpointError, match=f"transaction.atomic\\(\\) \\(database '{alias}'\\)"):
            AtomicJob().perform(alias)


@pytest.mark.django_db
def test_a_step_ending_inside_atomic_is_refused_and_not_recorded():
    outcome = execute(envelope_of(AtomicStepJob))
    assert outcome.kind == RETRY and isinstance(outcome.error, CheckpointError)
    assert outcome.envelope.meta["progress"]["completed"] == []


def saver(calls, held=True):
    def save(progress):
        calls.append(progress)
        return held
    return save


def test_progress_is_saved_at_every_step_end_and_throttled_checkpoints():
    calls = []
    assert execute(envelope_of(ThrottledJob, 50), context=RunContext(save_progress=saver(calls))).kind == SUCCEEDED
    assert calls == [{"completed": ["a"], "resumptions": 0}, {"completed": ["a", "b"], "resumptions": 0}]
    calls.clear()
    assert execute(envelope_of(SavingJob, 3), context=RunContext(save_progress=saver(calls))).kind == SUCCEEDED
    assert [c.get("current") for c in calls] == [None, ["b", 1], ["b", 2], ["b", 3], None]


def test_a_run_whose_claim_is_lost_stops_at_its_next_save():
    calls = []
    outcome = execute(envelope_of(SavingJob, 3), context=RunContext(save_progress=saver(calls, held=False)))
    assert outcome.kind == INTERRUPTED and "no longer holds" in str(outcome.error)
    assert len(calls) == 1


def test_a_save_that_fails_does_not_fail_the_run(caplog):
    def down(progress):
        raise ConnectionError("storage down")
    assert execute(envelope_of(SavingJob, 2), context=RunContext(save_progress=down)).kind == SUCCEEDED
    assert "saving progress failed (ConnectionError: storage down)" in caplog.text


def test_checkpoint_interval_is_checked():
    with pytest.raises(ValueError, match="checkpoint_interval"):
        type("BadInterval", (Job,), {"checkpoint_interval": -1, "__module__": __name__})
