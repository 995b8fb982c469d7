"""Unique jobs through the public API (Job attributes, set(unique_key=...), perform_all_later,
transactions, checks, test helpers). The adapter-level contract is in
tests/conformance/test_unique.py; races between real processes in tests/test_unique_races.py."""
from datetime import timedelta

import pytest
from django.db import transaction

from djjobs import DuplicateJob, Job, perform_all_later, registry, signals
from djjobs.adapters import use_adapter
from djjobs.checks import check_job_classes
from djjobs.testing import perform_enqueued_jobs
from djjobs.uniqueness import MAX_STORED_KEY, lock_of
from tests.jobs import CALLS, record
from tests.models import Article


class SyncAccountJob(Job):
    unique_for = 3600

    def perform(self, account_id, full=False):
        record("sync", account_id, full)


class ArticleJob(Job):
    unique_for = timedelta(minutes=5)
    unique_conflict = "raise"

    def unique_key(self, article, note=""):
        return f"article:{article.pk}"

    def perform(self, article, note=""):
        record("article", article.pk, note)


class LatestWinsJob(Job):
    unique_for = 600
    unique_conflict = "replace"

    def unique_key(self, account_id, value):
        return f"latest:{account_id}"

    def perform(self, account_id, value):
        record("latest", account_id, value)


class PlainJob(Job):
    def perform(self, n):
        record("plain", n)


def test_a_second_enqueue_returns_the_holder_marked_duplicate(enqueued_jobs):
    first = SyncAccountJob.perform_later(7)
    second = SyncAccountJob.perform_later(7)
    other = SyncAccountJob.perform_later(8)
    assert not first.duplicate and not other.duplicate
    assert second.duplicate and second.job_id == first.job_id
    assert [e.job_id for e in enqueued_jobs.enqueued] == [first.job_id, other.job_id]


def test_the_default_key_is_the_name_and_the_canonical_arguments(enqueued_jobs):
    SyncAccountJob.perform_later(7, full=True)
    assert SyncAccountJob.perform_later(7, full=True).duplicate
    assert not SyncAccountJob.perform_later(7, full=False).duplicate
    lock = lock_of(enqueued_jobs.enqueued[0].meta)
    assert lock.key == 'tests.test_unique_jobs.SyncAccountJob:[[7],{"full":true}]'
    assert lock.until == "finish" and lock.conflict == "skip"


def test_set_unique_key_makes_one_enqueue_unique(enqueued_jobs):
    first = PlainJob.set(unique_key="nightly").perform_later(1)
    assert PlainJob.set(unique_key="nightly").perform_later(2).job_id == first.job_id
    assert not PlainJob.perform_later(3).duplicate  # without a key: not unique
    lock = lock_of(enqueued_jobs.enqueued[0].meta)
    assert lock.expires - enqueued_jobs.enqueued[0].enqueued_at == pytest.approx(86400)


def test_the_key_method_sees_the_real_arguments_and_raise_refuses(enqueued_jobs, db):
    article = Article.objects.create(title="t")
    ArticleJob.perform_later(article, note="a")
    with pytest.raises(DuplicateJob) as info:
        ArticleJob.perform_later(article, note="b")
    assert info.value.key == f"article:{article.pk}"
    assert info.value.job_id == enqueued_jobs.enqueued[0].job_id
    assert "unique_conflict = 'skip'" in str(info.value)


def test_replace_keeps_only_the_latest(enqueued_jobs):
    LatestWinsJob.perform_later(1, "old")
    LatestWinsJob.perform_later(1, "new")
    assert enqueued_jobs.drain() == 1
    assert CALLS == [("latest", 1, "new")]


def test_perform_all_later_honours_keys(enqueued_jobs):
    held = SyncAccountJob.perform_later(1)
    jobs = perform_all_later([SyncAccountJob(1), SyncAccountJob(2), SyncAccountJob(2), PlainJob(9)])
    assert [j.duplicate for j in jobs] == [True, False, True, False]
    assert jobs[0].job_id == held.job_id and jobs[2].job_id == jobs[1].job_id


def test_job_enqueued_is_sent_for_stored_jobs_only(enqueued_jobs):
    seen = []

    def receiver(sender, envelope, **kw):
        seen.append(envelope.job_id)
    signals.job_enqueued.connect(receiver)
    try:
        first = SyncAccountJob.perform_later(1)
        SyncAccountJob.perform_later(1)
    finally:
        signals.job_enqueued.disconnect(receiver)
    assert seen == [first.job_id]


def test_long_keys_are_stored_as_a_digest(enqueued_jobs):
    PlainJob.set(unique_key="x" * 1000).perform_later(1)
    key = lock_of(enqueued_jobs.enqueued[0].meta).key
    assert key.startswith("sha256:") and len(key) <= MAX_STORED_KEY
    assert PlainJob.set(unique_key="x" * 1000).perform_later(2).duplicate


def test_bad_keys_are_refused_in_the_caller(enqueued_jobs):
    class BadKeyJob(Job):
        job_name = "tests.BadKeyJob"
        unique_for = 10

        def unique_key(self, n):
            return n

        def perform(self, n):
            pass
    try:
        with pytest.raises(TypeError, match=r"BadKeyJob.unique_key\(\) must return a non-empty str, got 5"):
            BadKeyJob.perform_later(5)
        with pytest.raises(TypeError, match="unique_key must be a non-empty str"):
            PlainJob.set(unique_key="")
            PlainJob.set(unique_key="").perform_later(1)
    finally:
        registry._jobs.pop("tests.BadKeyJob")
    assert enqueued_jobs.enqueued == []


def test_bad_declarations_are_system_check_errors():
    class Misdeclared(Job):
        job_name = "tests.Misdeclared"
        unique_for = -1
        unique_until = "end"
        unique_conflict = "ignore"

        def perform(self):
            pass
    try:
        errors = [e for e in check_job_classes() if e.id == "djjobs.E020"]
        assert len(errors) == 3
        text = " ".join(e.msg for e in errors)
        assert "unique_for must be a positive number" in text and "'finish' or 'start'" in text
        assert "'skip', 'replace' or 'raise'" in text
        with pytest.raises(ValueError, match="unique_until"):
            Misdeclared.perform_later()
    finally:
        registry._jobs.pop("tests.Misdeclared")


def test_perform_enqueued_jobs_honours_keys_held_by_stored_jobs(enqueued_jobs):
    SyncAccountJob.perform_later(1)  # stored: holds the key
    with perform_enqueued_jobs():
        assert SyncAccountJob.perform_later(1).duplicate
        SyncAccountJob.perform_later(2)  # free: runs at once
    assert CALLS == [("sync", 2, False)]


def test_a_finished_job_frees_its_key_in_the_test_adapter(enqueued_jobs):
    SyncAccountJob.perform_later(1)
    enqueued_jobs.drain()
    assert not SyncAccountJob.perform_later(1).duplicate


# --- transactions, on durable adapters --------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_enqueue_leaves_no_key_behind_database(database_sqlite_adapter):
    with use_adapter(database_sqlite_adapter):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                SyncAccountJob.perform_later(1)
                assert SyncAccountJob.perform_later(1).duplicate  # the same transaction sees its own key
                raise RuntimeError("rolled back")
        assert database_sqlite_adapter.unique_holds() == []
        assert not SyncAccountJob.perform_later(1).duplicate


@pytest.mark.django_db(transaction=True)
def test_inside_atomic_on_redis_the_key_is_taken_at_commit(redis_adapter):
    with use_adapter(redis_adapter):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                SyncAccountJob.perform_later(1)
                raise RuntimeError("rolled back")
        assert redis_adapter.unique_holds() == []
        with transaction.atomic():
            first = SyncAccountJob.perform_later(1)
            second = SyncAccountJob.perform_later(1)
            assert not second.duplicate  # not known before the commit
        assert second.duplicate and second.job_id == first.job_id
        assert redis_adapter.counts().enqueued == 1


@pytest.mark.django_db(transaction=True)
def test_raise_after_a_commit_is_logged_and_signalled(redis_adapter, caplog):
    failures = []

    def receiver(sender, envelope, exception, **kw):
        failures.append(type(exception))
    signals.job_enqueue_failed.connect(receiver)
    try:
        with use_adapter(redis_adapter):
            article = Article.objects.create(title="t")
            ArticleJob.perform_later(article)
            with transaction.atomic():
                ArticleJob.perform_later(article)
    finally:
        signals.job_enqueue_failed.disconnect(receiver)
    assert failures == [DuplicateJob]
    assert "holds its uniqueness key" in caplog.text
