"""Edge cases of the job API, its outcomes and its transaction promise that reviews
found: options that must be checked, hooks that must run, and jobs that must be stored
exactly when the caller's data commits, on any database alias."""
import pytest
from django.db import transaction

from djjobs import Job, retry_on
from djjobs.adapters import use_adapter
from djjobs.adapters.inline import InlineAdapter
from djjobs.envelope import Envelope
from djjobs.errors import EnqueueError
from djjobs.execution import DISCARDED, error_info, execute
from tests.fixtures.database import require_postgres
from tests.jobs import CALLS, EchoJob, MailerJob, record


class ExhaustedError(Exception):
    pass


@retry_on(ExhaustedError, attempts=1, on_exhausted=lambda job, exc: record("exhausted", job.job_id))
class HandledWhenExhaustedJob(Job):
    def perform(self):
        raise ExhaustedError

    def after_discard(self, exc):
        record("after_discard", self.job_id)


class QueueSeenJob(Job):
    def perform(self):
        record("seen", self.queue_name, self.priority)


class RetriedLaterJob(Job):
    retry_attempts = 3

    def perform(self):
        raise ValueError("again later")


@pytest.mark.parametrize("wait", [float("inf"), float("nan")])
def test_a_wait_that_is_not_a_finite_number_is_refused(wait, enqueued_jobs):
    with pytest.raises(ValueError, match="finite number of seconds"):
        EchoJob.set(wait=wait).perform_later()


def test_retry_on_checks_its_queue_and_priority():
    with pytest.raises(ValueError, match="Malformed queue name"):
        retry_on(ValueError, queue="not a queue!")
    with pytest.raises(ValueError, match=r"retry_on\(priority=...\) must be between"):
        retry_on(ValueError, priority=2**40)
    with pytest.raises(TypeError, match="must be an int"):
        retry_on(ValueError, priority=1.5)


def test_a_job_handled_by_on_exhausted_is_discarded_and_after_discard_runs():
    CALLS.clear()
    outcome = execute(Envelope(job=HandledWhenExhaustedJob.job_name))
    assert outcome.kind == DISCARDED
    assert [c[0] for c in CALLS] == ["exhausted", "after_discard"]


def test_set_options_apply_to_perform_now(enqueued_jobs):
    CALLS.clear()
    QueueSeenJob.set(queue="mailers", priority=7).perform_now()
    assert CALLS == [("seen", "mailers", 7)]


def test_an_error_message_json_cannot_carry_is_stored_escaped():
    info = error_info(OSError("no such file: caf\udce9.txt"))
    assert "caf\\udce9" in info["message"]
    Envelope(job=EchoJob.job_name, error=info).encode()  # storable


@pytest.mark.django_db(transaction=True)
def test_a_retry_from_perform_now_waits_for_the_transaction(enqueued_jobs):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            RetriedLaterJob.perform_now()
            assert enqueued_jobs.enqueued == []  # deferred to the commit, as perform_later
            raise RuntimeError("rolled back")
    assert enqueued_jobs.enqueued == []


@pytest.mark.django_db(transaction=True)
def test_a_job_that_cannot_be_stored_fails_in_the_caller_before_the_commit(enqueued_jobs, settings):
    settings.DJJOBS = {**settings.DJJOBS, "MAX_PAYLOAD_BYTES": 1000}
    with use_adapter(enqueued_jobs):
        with transaction.atomic():
            with pytest.raises(EnqueueError, match="over the 1,000-byte limit"):
                EchoJob.perform_later("x" * 2000)
    assert enqueued_jobs.enqueued == []


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_transaction_on_another_database_defers_the_job_too(enqueued_jobs):
    require_postgres()
    with pytest.raises(RuntimeError):
        with transaction.atomic(using="postgres"):
            EchoJob.perform_later("rolled back")
            raise RuntimeError
    assert enqueued_jobs.enqueued == []
    with transaction.atomic(using="postgres"), transaction.atomic(using="default"):
        EchoJob.perform_later("both committed")
        assert enqueued_jobs.enqueued == []
    assert [e.args for e in enqueued_jobs.enqueued] == [["both committed"]]


class FailsInlineError(Exception):
    pass


class FailsInlineJob(Job):
    retry_attempts = 1

    def perform(self):
        raise FailsInlineError("for good")


@pytest.mark.django_db(transaction=True)
def test_the_inline_adapter_reports_a_job_failing_after_the_commit_as_its_error(caplog):
    with use_adapter(InlineAdapter()):
        with pytest.raises(FailsInlineError):
            with transaction.atomic():
                FailsInlineJob.perform_later()
    assert "NOT stored" not in caplog.text
