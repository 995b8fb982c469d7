"""Transactions (on_commit, rollback, opt-out), the test helpers (pytest and TestCase),
the inline and async adapters, system checks."""
import logging

import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.test import TestCase, override_settings

from djjobs import Job, perform_all_later, signals
from djjobs.adapters import get_adapter, use_adapter
from djjobs.adapters.async_thread import AsyncAdapter
from djjobs.adapters.inline import InlineAdapter
from djjobs.adapters.testing import TestAdapter
from djjobs.errors import EnqueueError
from djjobs.testing import (JobsTestMixin, assert_enqueued_jobs, assert_enqueued_with, assert_no_enqueued_jobs,
                            drain_enqueued_jobs, enqueued_jobs as list_enqueued, perform_enqueued_jobs)
from tests.jobs import CALLS, AlwaysFailsJob, EchoJob, FlakyJob, MailerJob, record


class ChainJob(Job):
    """Enqueues an EchoJob: perform_enqueued_jobs must run both."""

    def perform(self, n):
        CALLS.append(("chain", n))
        EchoJob.perform_later(n + 1)


class NowJob(Job):
    enqueue_after_commit = False

    def perform(self):
        pass


# --- transactions --------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_inside_atomic_the_job_is_stored_on_commit(enqueued_jobs):
    with transaction.atomic():
        EchoJob.perform_later(1)
        assert_no_enqueued_jobs()  # not before the commit
        with transaction.atomic():  # a savepoint's release is not the commit
            EchoJob.perform_later(2)
        assert_no_enqueued_jobs()
    assert_enqueued_jobs(2)


@pytest.mark.django_db(transaction=True)
def test_a_rollback_leaves_no_job(enqueued_jobs):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            EchoJob.perform_later(1)
            raise RuntimeError("rolled back")
    with transaction.atomic():
        try:
            with transaction.atomic():
                EchoJob.perform_later("inner, rolled back")
                raise RuntimeError
        except RuntimeError:
            pass
        EchoJob.perform_later("outer, committed")
    [env] = enqueued_jobs.enqueued
    assert env.args == ["outer, committed"]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_and_opt_out_enqueue_at_once(enqueued_jobs):
    EchoJob.perform_later(1)
    assert_enqueued_jobs(1)
    with transaction.atomic():
        NowJob.perform_later()
        assert_enqueued_jobs(1, job=NowJob)


@pytest.mark.django_db(transaction=True)
def test_a_failed_enqueue_after_commit_is_logged_with_the_envelope(caplog):
    class Broken(TestAdapter):
        def enqueue(self, envelope):
            raise EnqueueError("broker down")

    failed = []

    def receiver(sender, envelope, exception, **kwargs):
        failed.append(envelope)

    signals.job_enqueue_failed.connect(receiver)
    try:
        with use_adapter(Broken()), caplog.at_level(logging.ERROR, logger="djjobs"):
            with transaction.atomic():
                job = EchoJob.perform_later("important")
    finally:
        signals.job_enqueue_failed.disconnect(receiver)
    assert [e.job_id for e in failed] == [job.job_id]
    assert job.job_id in caplog.text and '"important"' in caplog.text and "NOT stored" in caplog.text


class TestCaseEnqueues(JobsTestMixin, TestCase):
    """Django's TestCase wraps tests in transactions that never commit; they must not
    hide enqueues, and the mixin gives each test a fresh test adapter."""

    def test_perform_later_in_a_testcase(self):
        EchoJob.perform_later("x")
        assert_enqueued_with(job=EchoJob, args=["x"])
        self.assertEqual(len(self.jobs.enqueued), 1)

    def test_user_transactions_still_defer(self):
        with self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                EchoJob.perform_later("y")
                assert_no_enqueued_jobs()
        assert_enqueued_jobs(1)


# --- test helpers --------------------------------------------------------------------
def test_assertions_and_their_messages(enqueued_jobs):
    EchoJob.perform_later(1, k="v")
    MailerJob.perform_later("a@example.com")
    assert_enqueued_jobs(2)
    assert_enqueued_jobs(1, job=MailerJob)
    assert_enqueued_jobs(1, queue="mailers")
    assert_enqueued_with(job=EchoJob, args=[1], kwargs={"k": "v"}, queue="default")
    with pytest.raises(AssertionError, match=r"Expected 3 enqueued job\(s\), found 2: tests.jobs.EchoJob\(args=\[1\]"):
        assert_enqueued_jobs(3)
    with pytest.raises(AssertionError, match=r"No enqueued job matches \{'job': 'tests.jobs.EchoJob', 'args': \[2\]\}"):
        assert_enqueued_with(job=EchoJob, args=[2])
    assert [e.job for e in list_enqueued(queue="mailers")] == [MailerJob.job_name]


def test_perform_enqueued_jobs_runs_jobs_and_the_jobs_they_enqueue(enqueued_jobs):
    with perform_enqueued_jobs():
        ChainJob.perform_later(1)
    assert CALLS == [("chain", 1), ("echo", (2,), {})]
    assert len(enqueued_jobs.performed) == 2 and enqueued_jobs.counts().enqueued == 0


def test_perform_enqueued_jobs_retries_at_once_and_raises_for_good_failures(enqueued_jobs):
    with perform_enqueued_jobs():
        FlakyJob.perform_later(2)
        with pytest.raises(ValueError, match="always fails"):
            AlwaysFailsJob.perform_later()
    assert [c for c in CALLS if c[0] == "flaky"] == [("flaky", "k", 1), ("flaky", "k", 2), ("flaky", "k", 3)]


def test_drain_runs_what_was_enqueued_including_scheduled(enqueued_jobs):
    EchoJob.set(wait=3600).perform_later("later")
    ChainJob.perform_later(10)
    assert CALLS == []
    assert drain_enqueued_jobs() == 3
    assert sorted(c[0] for c in CALLS) == ["chain", "echo", "echo"]


def test_helpers_need_the_test_adapter():
    with use_adapter(InlineAdapter()):
        with pytest.raises(AssertionError, match="need the test adapter"):
            assert_enqueued_jobs(0)


def test_the_test_adapter_from_settings():
    assert isinstance(get_adapter(), TestAdapter)  # tests/settings.py: DJJOBS["ADAPTER"] = "test"


# --- inline and async adapters ------------------------------------------------------
def test_inline_runs_at_once_ignoring_waits_and_reraises():
    with use_adapter(InlineAdapter()):
        EchoJob.set(wait=3600).perform_later("now")
        FlakyJob.perform_later(2)
        with pytest.raises(ValueError, match="always fails"):
            AlwaysFailsJob.perform_later()
    assert CALLS[0] == ("echo", ("now",), {})
    assert [c[2] for c in CALLS if c[0] == "flaky"] == [1, 2, 3]


def test_async_runs_on_threads_with_timers_and_retries():
    import threading
    import time
    adapter = AsyncAdapter()
    threads = set()

    class WhereJob(Job):
        def perform(self, tag):
            threads.add(threading.current_thread().name)
            CALLS.append(("where", tag))

    try:
        with use_adapter(adapter):
            WhereJob.perform_later("a")
            WhereJob.set(wait=0.3).perform_later("later")
            FlakyJob.perform_later(1)  # retries after 10 s: it stays in the retry set
            assert adapter.wait_idle(5)
            deadline = time.monotonic() + 5
            while adapter.counts().processed < 2 and time.monotonic() < deadline:  # ran, and acknowledged
                time.sleep(0.01)
    finally:
        adapter.close()
    assert ("where", "a") in CALLS and ("where", "later") in CALLS
    assert all(name.startswith("djjobs-async") for name in threads)
    assert adapter.counts().retry == 1 and adapter.counts().processed == 2


# --- system checks ----------------------------------------------------------------------
@pytest.mark.parametrize("djjobs_setting, check_id, text", [
    ({"ADAPTER": "carrier-pigeon"}, "djjobs.E001", "Unknown DJJOBS['ADAPTER']"),
    ({"ADAPTER": "tests.jobs.EchoJob"}, "djjobs.E001", "not a djjobs.adapters.base.Adapter subclass"),
    ({"RETRY_ATTEMPTS": "5"}, "djjobs.E002", "must be int"),
    ({"LOG_ARGUMENTS": 1}, "djjobs.E002", "must be bool"),
    ({"PREFETCH_SECONDS": -1}, "djjobs.E002", "PREFETCH_SECONDS'] = -1 is below its minimum, 0"),
    ({"CONCURRENCY": 0}, "djjobs.E002", "CONCURRENCY'] = 0 is below its minimum, 1"),
    ({"QUEUES": ["default", "bad queue"]}, "djjobs.E003", "malformed queue name 'bad queue'"),
    ({"QUEUE": ["default"]}, "djjobs.E004", "unknown key 'QUEUE'"),
    ({"LEASE_SECONDS": float("nan")}, "djjobs.E002", "LEASE_SECONDS'] = nan is not a finite number"),
    ({"QUEUES": []}, "djjobs.E003", "QUEUES'] is empty"),
    ({"JOB_MODULES": [42]}, "djjobs.E002", "JOB_MODULES'] must be a list of str"),
    ({"OPTIONS": {"LEASE_SECONDS": "60"}}, "djjobs.E002", "DJJOBS['OPTIONS']['LEASE_SECONDS'] must be int or float"),
    ({"OPTIONS": {"CONCURRENCY": 3}}, "djjobs.E004", "DJJOBS['OPTIONS']['CONCURRENCY'] has no effect"),
    ("database", "djjobs.E002", "DJJOBS must be a dict, not str"),
])
def test_bad_settings_are_named_errors(djjobs_setting, check_id, text):
    with override_settings(DJJOBS=djjobs_setting):
        errors = [e for e in run_checks(tags=["djjobs"])]
    assert [e.id for e in errors] == [check_id] and text in errors[0].msg


def test_a_job_module_that_does_not_import_is_named():
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured
    with override_settings(DJJOBS={"JOB_MODULES": ["no_such_module_here"]}):
        with pytest.raises(ImproperlyConfigured, match=r"JOB_MODULES'\] names 'no_such_module_here'"):
            apps.get_app_config("djjobs").ready()


def test_async_in_production_warns():
    with override_settings(DJJOBS={"ADAPTER": "async"}, DEBUG=False):
        [warning] = run_checks(tags=["djjobs"])
    assert warning.id == "djjobs.W001" and "lost" in warning.msg
    with override_settings(DJJOBS={"ADAPTER": "async"}, DEBUG=True):
        assert run_checks(tags=["djjobs"]) == []


@pytest.mark.parametrize("adapter, imported", [("redis", True), ("no.such.Adapter", False)])
def test_startup_imports_the_configured_adapter_and_tolerates_a_bad_one(adapter, imported):
    """The first enqueue of a process should not pay for importing the adapter (redis-py
    takes ~90 ms); a bad ADAPTER must still let Django start, for the checks to name it."""
    import json
    import os
    import subprocess
    import sys
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.worker_settings", "DJJOBS_TEST_NO_PG": "1",
           "DJJOBS_TEST_DJJOBS": json.dumps({"ADAPTER": adapter})}
    code = ("import sys, django; django.setup(); "
            "print('djjobs.adapters.redis.adapter' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(imported)


class ChildLaterJob(Job):
    def perform(self):
        record("parent")
        EchoJob.set(wait=3600).perform_later("child later")


def test_drain_without_scheduled_jobs_leaves_the_scheduled_children_stored(enqueued_jobs):
    CALLS.clear()
    ChildLaterJob.perform_later()
    assert drain_enqueued_jobs(include_scheduled=False) == 1
    assert CALLS == [("parent",)] and enqueued_jobs.counts().scheduled == 1


def test_a_job_failing_in_a_drain_leaves_the_rest_of_its_round_stored(enqueued_jobs):
    CALLS.clear()
    AlwaysFailsJob.perform_later()
    EchoJob.perform_later("after")
    with pytest.raises(ValueError):
        drain_enqueued_jobs()
    assert ("echo", ("after",), {}) not in CALLS and enqueued_jobs.counts().enqueued == 1
    assert drain_enqueued_jobs() == 1 and ("echo", ("after",), {}) in CALLS


def test_assert_enqueued_with_tells_true_from_one(enqueued_jobs):
    EchoJob.perform_later(1)
    with pytest.raises(AssertionError):
        assert_enqueued_with(job=EchoJob, args=[True])
    assert_enqueued_with(job=EchoJob, args=[1])


@pytest.mark.django_db(transaction=True)
def test_a_failed_enqueue_after_commit_masks_secrets_and_skips_the_jobs_a_bulk_stored(caplog):
    class HalfStored(TestAdapter):
        def enqueue_many(self, envelopes):
            raise EnqueueError("refused part way", stored=[envelopes[0].job_id],
                               not_stored=[e.job_id for e in envelopes[1:]])

    with use_adapter(HalfStored()), caplog.at_level(logging.ERROR, logger="djjobs"):
        with transaction.atomic():
            first, second = perform_all_later([EchoJob("a", password="hunter2"), EchoJob("b", password="hunter2")])
    assert "hunter2" not in caplog.text and "********" in caplog.text
    assert second.job_id in caplog.text and first.job_id not in caplog.text
